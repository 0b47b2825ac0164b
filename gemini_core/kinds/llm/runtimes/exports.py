"""Exports an LLM user can run, and their re-measurement (for ``evaluate``): each file is loaded
back by its own runtime and measured again (perplexity, decode, the bandwidth limit).

- ``openvino-ir``: openvino_model.xml/.bin, weights as codes + scales on the point's grid, stateful
  KV cache, with the tokenizer (OpenVINO's runtime runs it; see docs/llm.md for the inputs);
- ``gguf``: the GGUF writer (llama.cpp's layout; a 4-bit grid kept in q4_0 / q4_1 blocks), reloaded by
  llama.cpp where llama-cpp-python is installed, else through transformers' GGUF loader (torch);
- ``hf``: safetensors + config + tokenizer, reloaded with transformers.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm import metrics
from gemini_core.kinds.llm.gguf_export import export_gguf
from gemini_core.kinds.llm.runtimes import llamacpp_llm, openvino_llm
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings
from gemini_core.kinds.llm.runtimes.measure import measure_runner
from gemini_core.kinds.llm.runtimes.run import machine_bandwidth
from gemini_core.kinds.llm.runtimes.torch_eager import TorchRunner
from gemini_core.kinds.llm.source import load_gguf, load_local, save_hf_folder

FORMATS = ("openvino-ir", "gguf", "hf")


def export_llm(model, tokenizer, path, fmt: str, settings: LLMRunSettings | None = None,
               gguf_type: str = "f32") -> Path:
    """Write ``model`` as ``fmt`` at ``path`` (a folder, or the .gguf file); returns the path."""
    settings = settings or LLMRunSettings()
    if fmt == "openvino-ir":
        return openvino_llm.export_ir(model, tokenizer, path, settings)
    if fmt == "gguf":
        return export_gguf(model, tokenizer, path, qtype=gguf_type)
    if fmt == "hf":
        return save_hf_folder(model, tokenizer, Path(path), {"name": Path(path).name, "exported_by": "gemini_core"})
    raise ConfigError(f"unknown LLM export format {fmt!r}; choose from {', '.join(FORMATS)}")


def reload_runner(path, fmt: str, settings: LLMRunSettings):
    if fmt == "openvino-ir":
        return openvino_llm.load_ir(path, settings)
    if fmt == "gguf":
        if importlib.util.find_spec("llama_cpp") is not None:
            return llamacpp_llm.LlamaCppRunner(Path(path), settings)
        model, _tokenizer = load_gguf(Path(path))
        return TorchRunner(model, settings)
    if fmt == "hf":
        return TorchRunner(load_local(path).model, settings)
    raise ConfigError(f"unknown LLM export format {fmt!r}; choose from {', '.join(FORMATS)}")


def evaluate_export(path, fmt: str, eval_ids, settings: LLMRunSettings | None = None,
                    perplexity_tokens: int | None = None) -> dict:
    """Reload an export in its runtime and measure it again."""
    settings = settings or LLMRunSettings()
    runner = reload_runner(path, fmt, settings)
    bandwidth = machine_bandwidth(settings.threads)
    record = measure_runner(runner, eval_ids, settings, bandwidth["copy_gb_per_s"], perplexity_tokens,
                            bandwidth.get("read_gb_per_s"))
    record.update(format=fmt, path=str(path), file_size_mb=metrics.file_size_mb(path), runtime=runner.execution)
    return record
