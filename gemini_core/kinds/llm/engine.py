"""The causal-LM kind's engine: what the shared workflows call for an LLM (sweep, retime, sensitivity,
export, evaluate)."""
from __future__ import annotations

from gemini_core.kinds.llm import export, flags  # noqa: F401  (the export and the sweep command's grid flags)
from gemini_core.kinds.llm.sweep import LLMSweep, LLMSweepSpec

KIND = "llm"


def open_sweep(scenario, spec, *, baseline=None, device=None, remote=None, latency_kwargs=None, progress=None):
    """``baseline`` and ``latency_kwargs`` are the classifier's: an LLM is loaded, not trained, and its
    timings are set by the spec's settings."""
    return LLMSweep(scenario, spec, remote, progress)


def spec_from_dict(data: dict) -> LLMSweepSpec:
    return LLMSweepSpec.from_dict(data)
