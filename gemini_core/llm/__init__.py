"""Causal language models: load (built-in SmolLM2 or ``hf:<dir>``), text data, one-shot pruning and
weight quantization with calibration, distillation recovery, metrics and GGUF export.

Self-contained for now; its files are meant to move into the stage folders later
(source/text_data -> scenarios, quantize/prune -> techniques, distill -> training,
gguf_export -> checkpoint, metrics -> measure)."""
from gemini_core.llm import scenario  # noqa: F401  (registers the "llm" scenario)
from gemini_core.llm.point import LLMPointConfig, LLMSettings, compress_llm, measure_llm_point
from gemini_core.llm.source import LoadedLM, load_causal_lm

__all__ = ["LLMPointConfig", "LLMSettings", "LoadedLM", "compress_llm", "load_causal_lm", "measure_llm_point"]
