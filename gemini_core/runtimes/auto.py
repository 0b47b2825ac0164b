"""``--execution auto``: keep a candidate only where it beats the reference beyond the timing noise.

Candidates are timed interleaved (each round runs every candidate once, in an order rotated each
round), so a load spike on the shared machine falls on all of them instead of on one. Each round gives
a paired speed-up per candidate (reference time / candidate time, measured seconds apart); its median
and a distribution-free interval for that median (order statistics, sign test) decide. A candidate
wins only when the whole interval is above 1, i.e. its own timings put it ahead of the reference in
nearly every round; otherwise the reference (torch at the same storage) is kept. The winner is then
timed again against the reference in fresh rounds (again if the machine was busy meanwhile) and kept
only if that confirms it. Every timing is returned, the losers' and the confirmation's too.
"""
from __future__ import annotations

import math
import os
import statistics
import time
from typing import Callable

import torch

from gemini_core.errors import ConfigError
from gemini_core.runtimes.base import Inputs, first_line

MIN_ROUNDS = 5  # fewer paired rounds cannot give a 90% interval for the median speed-up
CONFIDENCE = 0.9  # coverage of the speed-up interval that must lie above 1


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of an already sorted list (share in [0, 1])."""
    index = min(len(sorted_values) - 1, max(0, int(round(share * (len(sorted_values) - 1)))))
    return sorted_values[index]


def median_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(low, high, coverage): the widest-rank order statistics whose interval covers the median with at
    least ``confidence`` (sign test, no assumption on the noise's shape). Too few values: (min, max) and its
    real coverage, below ``confidence``."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ConfigError("an interval needs at least one value")

    def coverage(j: int) -> float:  # P(x_(j) <= median <= x_(n-j+1)) = 1 - 2 P(Binomial(n, 1/2) <= j - 1)
        return 1 - 2 * sum(math.comb(n, i) for i in range(j)) / 2 ** n

    j = 1
    while j + 1 <= (n + 1) // 2 and coverage(j + 1) >= confidence:
        j += 1
    return ordered[j - 1], ordered[n - j], coverage(j)


def load_average_1m() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None


def machine_busy() -> bool:
    """The last minute's load exceeded this machine's cores: timings taken then may favour anyone."""
    load = load_average_1m()
    return load is not None and load > (os.cpu_count() or 1)


def _time_once(model: Callable, inputs: Inputs, clock: Callable[[], float]) -> float:
    started = clock()
    with torch.inference_mode():
        model(**inputs)
    return (clock() - started) * 1e3


def interleaved_timings(candidates: dict[str, Callable], inputs: Inputs, rounds: int = 5, warmup: int = 2,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, dict]:
    """name -> latency_ms_p50 / p10 / p90 / runs / rounds_ms (in round order), timed once per round, rotated."""
    if rounds < 1:
        raise ConfigError(f"rounds {rounds} must be at least 1")
    names = list(candidates)
    samples_ms: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up: first calls allocate, compile kernels and fill caches
        for _ in range(warmup):
            _time_once(candidates[name], inputs, clock)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples_ms[name].append(_time_once(candidates[name], inputs, clock))
    out = {}
    for name, values in samples_ms.items():
        ordered = sorted(values)
        out[name] = {"latency_ms_p50": statistics.median(ordered), "latency_ms_p10": percentile(ordered, 0.1),
                     "latency_ms_p90": percentile(ordered, 0.9), "runs": len(ordered),
                     "rounds_ms": [round(v, 3) for v in values]}
    return out


def paired_speedup(reference_ms: list[float], candidate_ms: list[float], confidence: float = CONFIDENCE) -> dict:
    """The candidate's speed-up over the reference from same-round timings: median, interval, coverage."""
    ratios = [r / c for r, c in zip(reference_ms, candidate_ms) if c > 0]
    low, high, cover = median_interval(ratios, confidence)
    return {"speedup_vs_reference": statistics.median(ratios), "speedup_interval": [low, high],
            "interval_coverage": round(cover, 4), "beats_reference": low > 1.0}


def _timed_phase(models: dict[str, Callable], reference: str, inputs: Inputs, rounds: int, warmup: int,
                 clock: Callable[[], float], confidence: float) -> dict:
    load_before = load_average_1m()
    timings = interleaved_timings(models, inputs, rounds=rounds, warmup=warmup, clock=clock)
    ref_rounds = timings[reference]["rounds_ms"]
    for name in models:
        if name != reference:
            timings[name].update(paired_speedup(ref_rounds, timings[name]["rounds_ms"], confidence))
    return {"timings": timings, "load_avg_1m": [load_before, load_average_1m()]}


def choose_fastest(candidates: dict[str, Callable], inputs: Inputs, accuracy_fn: Callable[[Callable], float],
                   tolerance_points: float, reference: str | None = None, rounds: int = 7, warmup: int = 2,
                   compete: list[str] | None = None, confirm_rounds: int | None = None,
                   confidence: float = CONFIDENCE, clock: Callable[[], float] = time.perf_counter,
                   busy: Callable[[], bool] = machine_busy) -> dict:
    """The candidate within ``tolerance_points`` of ``reference``'s accuracy that beats it beyond the noise,
    else ``reference`` itself.

    ``candidates``: name -> model called as ``model(**inputs)`` (a RuntimeModel or torch module);
    ``reference``: the candidate that sets the accuracy bar and the speed to beat (default: the first one;
    for ``auto``, torch at the same storage); ``accuracy_fn(model)``: accuracy in [0, 1] on held-out data.
    ``compete``: the names that may be chosen (default: all); the others are timed in the same rounds as
    comparisons only (a benchmark's hand-made peers). A candidate that raises when run is rejected with its
    error. A candidate may win only if its paired speed-up interval (``confidence`` coverage, ``rounds``
    rounds) lies above 1; the fastest such one by median speed-up is timed again against the reference
    (``confirm_rounds``, default ``rounds``; again once if ``busy()`` says the machine was loaded) and kept
    only if the confirmation's interval also lies above 1.

    Returns {"chosen", "reference", "tolerance_points", "confidence", "method", "decided_by",
    "candidates": name -> {accuracy, accuracy_delta_pts, within_tolerance, latency_ms_*, rounds_ms,
    speedup_vs_reference, speedup_interval, beats_reference}, "selection_load_avg_1m", "confirmation"}.
    """
    if not candidates:
        raise ConfigError("choose_fastest needs at least one candidate")
    if rounds < MIN_ROUNDS:
        raise ConfigError(f"rounds {rounds} must be at least {MIN_ROUNDS} for an interval on the speed-up")
    reference = reference or next(iter(candidates))
    if reference not in candidates:
        raise ConfigError(f"reference {reference!r} is not one of the candidates ({', '.join(candidates)})")
    confirm_rounds = max(MIN_ROUNDS, confirm_rounds or rounds)
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
    selection = _timed_phase(runnable, reference, inputs, rounds, warmup, clock, confidence)
    ref_acc = results[reference]["accuracy"]
    for name in runnable:
        delta = (results[name]["accuracy"] - ref_acc) * 100
        results[name].update(selection["timings"][name], accuracy_delta_pts=delta,
                             within_tolerance=-delta <= tolerance_points)
    results[reference].update(speedup_vs_reference=1.0, speedup_interval=[1.0, 1.0], beats_reference=False)
    allowed = set(candidates if compete is None else compete)
    if reference not in allowed:
        raise ConfigError(f"the reference {reference!r} must be allowed to compete: it is kept when nothing beats it")
    ahead = [n for n in runnable if n != reference and n in allowed and results[n]["within_tolerance"]
             and results[n]["beats_reference"]]
    record = {"reference": reference, "tolerance_points": tolerance_points, "confidence": confidence,
              "method": (f"interleaved, {rounds} rounds after {warmup} warm-up calls each; paired speed-up per "
                         f"round (reference ms / candidate ms), median with a {confidence:.0%} sign-test interval; "
                         "a candidate wins only if the whole interval is above 1 and a fresh timing against the "
                         "reference confirms it"),
              "selection_load_avg_1m": selection["load_avg_1m"], "candidates": results, "confirmation": None}
    if not ahead:
        return {**record, "chosen": reference,
                "decided_by": "selection: no candidate within tolerance beat the reference beyond the interval"}
    best = max(ahead, key=lambda n: results[n]["speedup_vs_reference"])
    pair = {reference: runnable[reference], best: runnable[best]}
    attempts = []
    for _ in range(2):  # a confirmation taken while the machine was loaded is taken again, once
        phase = _timed_phase(pair, reference, inputs, confirm_rounds, 1, clock, confidence)
        phase["machine_busy"] = busy()
        attempts.append(phase)
        if not phase["machine_busy"]:
            break
    final = attempts[-1]["timings"]
    confirmed = bool(final[best]["beats_reference"])
    record["confirmation"] = {
        "candidate": best, "rounds": confirm_rounds, "confirmed": confirmed,
        "speedup_vs_reference": final[best]["speedup_vs_reference"],
        "speedup_interval": final[best]["speedup_interval"],
        "attempts": [{"load_avg_1m": a["load_avg_1m"], "machine_busy": a["machine_busy"],
                      "reference_rounds_ms": a["timings"][reference]["rounds_ms"],
                      "candidate_rounds_ms": a["timings"][best]["rounds_ms"],
                      "speedup_interval": a["timings"][best]["speedup_interval"]} for a in attempts]}
    if confirmed:
        return {**record, "chosen": best,
                "decided_by": f"selection and confirmation: {best} beat the reference beyond the interval in both"}
    return {**record, "chosen": reference,
            "decided_by": f"confirmation: {best} did not beat the reference beyond the interval when timed again"}


def check_against_reference(model: Callable, reference: Callable, inputs: Inputs, rounds: int = 7,
                            confidence: float = CONFIDENCE, clock: Callable[[], float] = time.perf_counter) -> dict:
    """``model`` (an ``auto`` point as built) timed again against ``reference`` (torch at the same storage),
    interleaved and paired, after the sweep has measured them: whether the choice still holds on this machine
    now. Verdict: "faster than torch" / "slower than torch" when the interval is above / below 1, else
    "no measurable difference"."""
    load_before = load_average_1m()
    timings = interleaved_timings({"torch": reference, "auto": model}, inputs, rounds=max(rounds, MIN_ROUNDS),
                                  warmup=1, clock=clock)
    speed = paired_speedup(timings["torch"]["rounds_ms"], timings["auto"]["rounds_ms"], confidence)
    low, high = speed["speedup_interval"]
    verdict = "faster than torch" if low > 1 else "slower than torch" if high < 1 else "no measurable difference"
    return {"verdict": verdict, "speedup_vs_torch": speed["speedup_vs_reference"], "speedup_interval": [low, high],
            "interval_coverage": speed["interval_coverage"], "rounds": timings["auto"]["runs"],
            "auto_rounds_ms": timings["auto"]["rounds_ms"], "torch_rounds_ms": timings["torch"]["rounds_ms"],
            "load_avg_1m": [load_before, load_average_1m()]}
