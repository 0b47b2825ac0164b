"""Causal language models: load (built-in SmolLM2 or ``hf:<dir>``), text data, one-shot pruning and
weight quantization with calibration, distillation recovery, metrics, runtimes and exports.

One package for the LLM path, with a file per stage (source/text_data, calibrate/quantize/prune/
structured/distill, point, metrics, runtimes/, *_export), rather than spread over the classifier's
stage folders: its model type (a transformers causal LM), its quality measure (perplexity), its
calibration and its runtimes share nothing with the classifiers' versions of those stages, so one
folder keeps the path readable end to end. The workflows (sweep, sensitivity, export, retime, Ray)
use it the way they use the classifier stages."""
from gemini_core.llm import scenario  # noqa: F401  (registers the "llm" scenario)
from gemini_core.llm.point import LLMPointConfig, LLMSettings, compress_llm, measure_llm_point
from gemini_core.llm.source import LoadedLM, load_causal_lm

__all__ = ["LLMPointConfig", "LLMSettings", "LoadedLM", "compress_llm", "load_causal_lm", "measure_llm_point"]
