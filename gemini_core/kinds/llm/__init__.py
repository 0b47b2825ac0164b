"""The causal-LM kind: load (built-in SmolLM2 or ``hf:<dir>``), text data, one-shot pruning and weight
quantization with calibration, distillation recovery, metrics, runtimes and exports.

A file per stage (source/text_data, calibrate/quantize/prune/structured/distill, point, metrics, runtimes/,
*_export). ``info.py`` is the kind's torch-free description (registered in ``gemini_core.kinds``);
``engine.py`` is what the shared workflows call. This package's ``__init__`` imports nothing, so reading
the description never loads torch.
"""
