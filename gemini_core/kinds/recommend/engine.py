"""The recommender kind's engine: what the shared workflows call for a recommender (sweep, retime, sensitivity,
export, evaluate).

The baseline is trained (or loaded from its cache, keyed by everything that changes its weights) when a
sweep, an analysis, an export or a retime opens: the kind's training settings travel with its grid and its
analysis parameters, so the shared doors pass no baseline (``KindInfo.trains_baseline`` is False: the
product's baseline door trains classifiers). Points are measured on the CPU, in this process.
"""
from __future__ import annotations

from gemini_core.kinds.recommend import export, flags
from gemini_core.kinds.recommend.points import RecommendSweepSpec
from gemini_core.kinds.recommend.retime import retime_recommend_points
from gemini_core.kinds.recommend.sensitivity import RecommendSensitivityParams, analyse_recommender
from gemini_core.kinds.recommend.sweep import RecommendSweep

KIND = "recommend"

# The kind's modules the shared doors reach through its engine (engine(kind).export, .flags).
__all__ = ["export", "flags"]


def open_sweep(scenario, spec, *, baseline=None, device=None, remote=None, latency_kwargs=None, progress=None):
    """``device`` and ``latency_kwargs`` are the classifier's: recommender points are timed on the CPU with the
    grid's measurement settings. ``baseline``: a ``RecommendBaseline`` already trained for the grid's settings
    (None: trained or loaded from the cache here)."""
    return RecommendSweep(scenario, spec, remote=remote, progress=progress, baseline=baseline)


def spec_from_dict(data: dict) -> RecommendSweepSpec:
    return RecommendSweepSpec.from_dict(data)


def retime(store, run, points, rounds=5, device=None, threads=None, latency_kwargs=None, progress=None):
    """``device`` and ``latency_kwargs`` are the classifier's: recommender points are timed on the CPU."""
    return retime_recommend_points(store, run, points, rounds=rounds, threads=threads, progress=progress)


def analyse(scenario, params, store, baseline=None, device=None, force=False, progress=None, should_stop=None,
            on_profile=None):
    """Each embedding table quantized alone at each bit width (``baseline`` and ``device`` are the
    classifier's: the analysed baseline is the one ``params.train`` describes)."""
    return analyse_recommender(scenario, params, store=store, force=force, progress=progress,
                               should_stop=should_stop, on_profile=on_profile)


def sensitivity_params(data: dict) -> RecommendSensitivityParams:
    return RecommendSensitivityParams.from_dict(data)
