"""The LLM executions, declared by name (so callers can list and validate them without importing a
runtime); ``run.py`` maps each to its module's ``load(model, tokenizer, settings)``."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from gemini_core.errors import ConfigError


@dataclass(frozen=True)
class LLMExecution:
    name: str
    module: str
    help: str
    overrides: dict = field(default_factory=dict)  # settings this execution fixes
    requires: str | None = None  # an optional package this execution needs, with how to install it


LLM_EXECUTIONS: dict[str, LLMExecution] = {e.name: e for e in (
    LLMExecution("torch", "torch_eager", "torch eager, float32 compute of the stored (dequantized) weights"),
    LLMExecution("openvino", "openvino_llm", "OpenVINO CPU, stateful KV cache, weights stored as codes + scales "
                 "on the point's own grid (LM head int8; KV cache in the plugin's default, u8 on x86)"),
    LLMExecution("openvino-int4-head", "openvino_llm", "as openvino, with the LM head in int4 groups of 64 "
                 "(the head is a fifth of SmolLM2's weights)", {"head_bits": 4, "head_group": 64}),
    LLMExecution("onnxruntime-genai", "genai_llm", "ONNX Runtime GenAI (reports why when it cannot load the export)"),
    LLMExecution("llama.cpp", "llamacpp_llm", "llama.cpp (llama-cpp-python, optional): GGUF with the point's 4-bit "
                 "grid in q4_0 / q4_1 blocks (8-bit: q8_0), f16 KV cache",
                 requires="llama_cpp: pip install \"llama-cpp-python>=0.3.36,<0.4\" (compiles llama.cpp, minutes)"),
)}
AUTO = "auto"


def names() -> list[str]:
    return [*LLM_EXECUTIONS, AUTO]


def missing(names) -> dict[str, str]:
    """{execution: how to install what it needs} for those of ``names`` whose optional package is absent here."""
    out = {}
    for name in names:
        spec = LLM_EXECUTIONS.get(name)
        if spec is not None and spec.requires:
            module, _, how = spec.requires.partition(": ")
            if importlib.util.find_spec(module) is None:
                out[name] = how
    return out


def check(name: str) -> LLMExecution:
    if name not in LLM_EXECUTIONS:
        raise ConfigError(f"unknown LLM execution {name!r}; choose from {', '.join(names())}")
    return LLM_EXECUTIONS[name]
