"""The causal-LM kind's engine: what the shared workflows call for an LLM (sweep, retime, sensitivity,
export, evaluate)."""
from __future__ import annotations

from gemini_core.kinds.llm import export, flags
from gemini_core.kinds.llm.retime import retime_llm_points
from gemini_core.kinds.llm.sensitivity import LLMSensitivityParams, analyse_llm
from gemini_core.kinds.llm.sweep import LLMSweep, LLMSweepSpec

KIND = "llm"


# The kind's modules the shared doors reach through its engine (engine(kind).export, .flags).
__all__ = ["export", "flags"]


def open_sweep(scenario, spec, *, baseline=None, device=None, remote=None, latency_kwargs=None, progress=None):
    """``baseline`` and ``latency_kwargs`` are the classifier's: an LLM is loaded, not trained, and its
    timings are set by the spec's settings."""
    return LLMSweep(scenario, spec, remote, progress)


def spec_from_dict(data: dict) -> LLMSweepSpec:
    return LLMSweepSpec.from_dict(data)


def retime(store, run, points, rounds=5, device=None, threads=None, latency_kwargs=None, progress=None):
    """``device`` and ``latency_kwargs`` are the classifier's: LLM points run on the CPU with the run's settings."""
    return retime_llm_points(store, run, points, rounds=rounds, threads=threads, progress=progress)


def analyse(scenario, params, store, baseline=None, device=None, force=False, progress=None, should_stop=None,
            on_profile=None):
    """One decoder block quantized at a time (``baseline`` and ``device`` are the classifier's)."""
    return analyse_llm(scenario, params, store=store, force=force, progress=progress, should_stop=should_stop,
                       on_profile=on_profile)


def sensitivity_params(data: dict) -> LLMSensitivityParams:
    return LLMSensitivityParams.from_dict(data)
