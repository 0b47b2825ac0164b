"""Causal language models: load (built-in SmolLM2 or ``hf:<dir>``), text data, one-shot pruning and
weight quantization with calibration, distillation recovery, metrics and GGUF export.

Self-contained for now; its files are meant to move into the stage folders later
(source/text_data -> scenarios, quantize/prune -> techniques, distill -> training,
gguf_export -> checkpoint, metrics -> measure)."""
from gemini_core.llm.source import LoadedLM, load_causal_lm

__all__ = ["LoadedLM", "load_causal_lm"]
