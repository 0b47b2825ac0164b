"""``--execution auto``: time every candidate on this machine, keep the fastest within the accuracy tolerance.

Candidates are timed interleaved (each round runs every candidate once, in an order rotated each
round), so a load spike on the shared machine falls on all of them instead of on one. Every timing
is returned, the losers' too, so the choice can be checked.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from gemini_core.errors import ConfigError
from gemini_core.runtimes.base import Inputs, first_line


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of an already sorted list (share in [0, 1])."""
    index = min(len(sorted_values) - 1, max(0, int(round(share * (len(sorted_values) - 1)))))
    return sorted_values[index]


def _time_once(model: Callable, inputs: Inputs) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        model(**inputs)
    return (time.perf_counter() - started) * 1e3


def interleaved_timings(candidates: dict[str, Callable], inputs: Inputs, rounds: int = 5, warmup: int = 2
                        ) -> dict[str, dict]:
    """name -> latency_ms_p50 / p10 / p90 / runs, each candidate timed once per round in rotated order."""
    if rounds < 1:
        raise ConfigError(f"rounds {rounds} must be at least 1")
    names = list(candidates)
    samples_ms: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up: first calls allocate, compile kernels and fill caches
        for _ in range(warmup):
            _time_once(candidates[name], inputs)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples_ms[name].append(_time_once(candidates[name], inputs))
    out = {}
    for name, values in samples_ms.items():
        ordered = sorted(values)
        out[name] = {"latency_ms_p50": statistics.median(ordered), "latency_ms_p10": percentile(ordered, 0.1),
                     "latency_ms_p90": percentile(ordered, 0.9), "runs": len(ordered),
                     "rounds_ms": [round(v, 3) for v in values]}
    return out


def choose_fastest(candidates: dict[str, Callable], inputs: Inputs, accuracy_fn: Callable[[Callable], float],
                   tolerance_points: float, reference: str | None = None, rounds: int = 5, warmup: int = 2,
                   compete: list[str] | None = None) -> dict:
    """The fastest candidate whose accuracy is within ``tolerance_points`` of ``reference``'s.

    ``compete``: the names that may be chosen (default: all); the others are timed in the same rounds
    as comparisons only (a benchmark's hand-made peers).

    ``candidates``: name -> model called as ``model(**inputs)`` (a RuntimeModel or torch module);
    ``reference``: the candidate whose accuracy sets the bar (default: the first one);
    ``accuracy_fn(model)``: accuracy in [0, 1] on held-out data. A candidate that raises when run is
    rejected with its error, not chosen. Returns {"chosen", "reference", "tolerance_points",
    "candidates": name -> {accuracy, accuracy_delta_pts, within_tolerance, latency_ms_*, speedup_vs_reference}}.
    """
    if not candidates:
        raise ConfigError("choose_fastest needs at least one candidate")
    reference = reference or next(iter(candidates))
    if reference not in candidates:
        raise ConfigError(f"reference {reference!r} is not one of the candidates ({', '.join(candidates)})")
    results: dict[str, dict] = {}
    runnable: dict[str, Callable] = {}
    for name, model in candidates.items():
        try:
            results[name] = {"accuracy": float(accuracy_fn(model))}
            runnable[name] = model
        except Exception as exc:  # a runtime that fails on this machine is reported, the others still compete
            results[name] = {"error": f"{type(exc).__name__}: {first_line(exc)}", "within_tolerance": False}
    if reference not in runnable:
        raise ConfigError(f"the reference {reference!r} failed to run: {results[reference]['error']}")
    timings = interleaved_timings(runnable, inputs, rounds=rounds, warmup=warmup)
    ref_acc, ref_ms = results[reference]["accuracy"], timings[reference]["latency_ms_p50"]
    for name in runnable:
        delta = (results[name]["accuracy"] - ref_acc) * 100
        results[name].update(timings[name], accuracy_delta_pts=delta, within_tolerance=-delta <= tolerance_points,
                             speedup_vs_reference=ref_ms / timings[name]["latency_ms_p50"])
    allowed = set(candidates if compete is None else compete)
    eligible = [n for n in runnable if results[n]["within_tolerance"] and n in allowed]
    if not eligible:
        raise ConfigError(f"no candidate among {', '.join(sorted(allowed))} ran within {tolerance_points} points "
                          f"of {reference!r}")
    chosen = min(eligible, key=lambda n: results[n]["latency_ms_p50"])
    return {"chosen": chosen, "reference": reference, "tolerance_points": tolerance_points,
            "method": f"interleaved, {rounds} rounds after {warmup} warm-up calls each; median with p10/p90",
            "candidates": results}
