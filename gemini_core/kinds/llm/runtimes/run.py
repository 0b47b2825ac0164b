"""Loading a runner for a named execution, and the machine's bandwidth (measured once per process)."""
from __future__ import annotations

import dataclasses
import time

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm.runtimes import genai_llm, llamacpp_llm, openvino_llm, torch_eager
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings
from gemini_core.kinds.llm.runtimes.measure import copy_bandwidth_gb_s, read_bandwidth_gb_s
from gemini_core.kinds.llm.runtimes.registry import check

LOADERS = {"torch_eager": torch_eager.load, "openvino_llm": openvino_llm.load, "genai_llm": genai_llm.load,
           "llamacpp_llm": llamacpp_llm.load}
_BANDWIDTH: dict[int, dict] = {}


def machine_bandwidth(threads: int) -> dict:
    """The copy and read bandwidths at ``threads`` threads, measured once per process."""
    if threads not in _BANDWIDTH:
        _BANDWIDTH[threads] = {**copy_bandwidth_gb_s(threads), **read_bandwidth_gb_s(threads)}
    return _BANDWIDTH[threads]


def settings_for(execution: str, settings: LLMRunSettings | dict | None) -> LLMRunSettings:
    if settings is None:
        settings = LLMRunSettings()
    elif isinstance(settings, dict):
        known = {f.name for f in dataclasses.fields(LLMRunSettings)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"unknown LLM run setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        settings = LLMRunSettings(**settings)
    return dataclasses.replace(settings, **check(execution).overrides)


def load_runner(execution: str, model, tokenizer, settings: LLMRunSettings):
    spec = check(execution)
    start = time.perf_counter()
    runner = LOADERS[spec.module](model, tokenizer, settings_for(execution, settings))
    runner.execution = execution
    return runner, time.perf_counter() - start
