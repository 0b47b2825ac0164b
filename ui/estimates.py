"""Time estimates learned from this machine: the seconds each measured point and each pruning setting
really took (every stored record carries ``seconds`` and ``prune_seconds``), per scenario, shown as a
range. The scenario registry's planning figures (``ui.sweep_plan.planning_costs``) are the prior until enough
points of that scenario were measured here.

Load: on 2 cores shared with other work a point takes longer as the load grows, by about the square root of the
runnable threads per core (``load_factor``). Measured seconds are brought to an idle machine's by the load their
record carries (``load_avg_1m``, ``cores``) and estimates are scaled to the load now; each says which it assumed.

While a job runs, ``time_left`` counts down from this job's own pace, measured from its first point (the
start-up before it, imports and loading the model, says nothing of the pace), and never grows without a
reason shown."""
from __future__ import annotations

import os
import statistics

from gemini_core.errors import GeminiError
from gemini_core.results.store import Store

from .sweep_plan import estimate_seconds, planning_costs

MIN_SAMPLES = 4      # fewer measured points than this: the registry's figures
RECENT_RUNS = 6      # the newest runs of the scenario are enough and keep this cheap


# From the click to the first point, besides the baseline: the job's imports (torch), the data, the model loaded.
# Measured: 4.9 s at load 5.4 on 2 cores for digits with its shipped baseline (tests/e2e/measure_demo.py).
START_SECONDS = 3.0


def load_factor(load: float | None, cores: int | None) -> float:
    """About how much slower work runs at this 1-minute load average than on an idle machine (1.0 when it is not
    known or the machine has room). Not load / cores: measured, the digits demo took 31.9 s at load 0.9-2.1 and
    51-53 s at load 8.3-8.9 on 2 cores, 1.6x where load / cores says 3.3x and its square root 1.8x (the load
    counts threads that wait or run in short bursts)."""
    try:
        load, cores = float(load), int(cores)
    except (TypeError, ValueError):
        return 1.0
    if not (load == load) or cores < 1:
        return 1.0
    return max(1.0, load / cores) ** 0.5


def current_load(job_threads: int = 1) -> tuple[float, float | None]:
    """(factor, load average) for work started now: the load already there plus the job's own threads."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 1.0, None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return load_factor(load + job_threads, cores), load


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) == 1:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def learned_costs(scenario: str, store: Store | None = None) -> dict | None:
    """Measured cost quartiles for ``scenario`` on this machine: {'point': (p25, p75) seconds per point,
    'setting': (p25, p75) seconds per pruning setting per 60 fine-tune steps, 'n': points used}; None when
    fewer than MIN_SAMPLES points were measured here."""
    try:
        store = store or Store()
        runs = [r for r in store.runs() if r["scenario"] == scenario and r["points_ok"]][:RECENT_RUNS]
        records = [p for r in runs for p in store.points(r["run_id"], include_failed=False)]
    except GeminiError:
        return None
    # idle-machine seconds: each record's by the load it was measured at
    point = [float(p["seconds"]) / load_factor(p.get("load_avg_1m"), p.get("cores")) for p in records
             if isinstance(p.get("seconds"), (int, float)) and p["seconds"] > 0]
    if len(point) < MIN_SAMPLES:
        return None
    settings = {}
    for p in records:
        cfg = p.get("config") or {}
        seconds = p.get("prune_seconds")
        if isinstance(seconds, (int, float)) and float(cfg.get("prune_ratio") or 0) > 0:
            steps = float(cfg.get("finetune_steps") or 0)
            key = (p.get("run_id"), cfg.get("prune_method"), cfg.get("prune_ratio"), steps)
            settings[key] = float(seconds) / max(1.0, steps / 60.0) / load_factor(p.get("load_avg_1m"), p.get("cores"))
    return {"point": _quartiles(point), "setting": _quartiles(list(settings.values())) if settings else None,
            "n": len(point)}


def estimate_range(spec, scenario: str, baseline_cached: bool = True, start: bool = False,
                   load: tuple[float, float | None] | None = None) -> tuple[float, float, str]:
    """(low, high, where from) seconds for a sweep: from this machine's measurements when there are enough,
    else the registry's planning figure with a ±50% range; scaled to the load now (``load``: (factor, load
    average) from ``current_load``). ``start``: the time to the first point (imports, data) is included."""
    factor, average = load or current_load()
    at_load = f" at the load now ({average:.1f}: about {factor:.1f}x an idle machine)" if average is not None else ""
    low, high, source = _idle_range(spec, scenario, baseline_cached)
    fixed = START_SECONDS if start else 0.0
    return (low + fixed) * factor, (high + fixed) * factor, source + at_load


def _idle_range(spec, scenario: str, baseline_cached: bool) -> tuple[float, float, str]:
    prior = estimate_seconds(spec, scenario, baseline_cached=baseline_cached)
    learned = learned_costs(scenario)
    if learned is None:
        per_point, per_setting = planning_costs(scenario)
        return (0.5 * prior, 1.5 * prior,
                f"planning figures for {scenario} (~{per_point:g} s per point, ~{per_setting:g} s per pruning "
                "setting); it learns from your sweeps")
    finetune = max(spec.finetune_steps) if spec.finetune_steps else 0
    settings = len([c for c in spec.prune_settings() if float(c.prune_ratio or 0) > 0])
    fixed = prior - estimate_seconds(spec, scenario, baseline_cached=True) if not baseline_cached else 0.0
    per_setting = learned["setting"] or (0.0, 0.0)
    scale = max(1.0, finetune / 60.0)
    low = spec.n_points() * learned["point"][0] + settings * per_setting[0] * scale + fixed
    high = spec.n_points() * learned["point"][1] + settings * per_setting[1] * scale + fixed
    return low, max(high, low), f"{learned['n']} points measured on this machine for {scenario}"


def format_range(low: float, high: float) -> str:
    def one(s: float) -> str:
        return f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"
    return one(low) if one(low) == one(high) else f"{one(low)}-{one(high)}"


def time_left(snap: dict, now: float, per_point_prior: float | None = None) -> tuple[float | None, str]:
    """(seconds left, why it changed) for a running sweep's snapshot: this job's pace since its first point
    (``record_times``: when each point arrived), counted down between points. At the first point, before any
    pace exists, ``per_point_prior`` (seconds) or None. A new estimate above the running countdown comes with
    the reason (the latest point took longer); otherwise the reason is empty."""
    times, total = list(snap.get("record_times") or []), snap.get("total") or 0
    done = len(times)
    if not done or not total or done >= total:
        return None, ""
    if done == 1:
        if per_point_prior is None:
            return None, ""
        return max(0.0, per_point_prior * (total - 1) - (now - times[0])), ""
    pace = (times[-1] - times[0]) / (done - 1)
    left = pace * (total - done)
    note = ""
    if done >= 3:  # what the countdown showed just before this point arrived
        before = (times[-2] - times[0]) / (done - 2) * (total - done + 1) - (times[-1] - times[-2])
        if left > before + max(2.0, 0.1 * before):
            note = (f"up from about {max(0.0, before):.0f} s: the latest point took {times[-1] - times[-2]:.0f} s, "
                    f"the ones before {(times[-2] - times[0]) / (done - 2):.1f} s each")
    return max(0.0, left - (now - times[-1])), note


def training_left(events: list[dict], elapsed_s: float) -> tuple[float, float, str] | None:
    """(at least, at most, why) seconds of baseline training left, from its step and epoch events. With early
    stopping (``patience``) training may end after ``patience`` epochs without a better validation accuracy:
    the low end; all epochs: the high end. None before the first step."""
    steps = [e for e in events if e.get("event") == "step"]
    if not steps:
        return None
    last = steps[-1]
    step, total = int(last["step"]), max(1, int(last["total_steps"]))
    epochs = [e for e in events if e.get("event") == "epoch"]
    # the training's own clock once an epoch ended (the job's elapsed time includes imports and data loading)
    per_step = (float(epochs[-1]["seconds"]) / max(1, int(epochs[-1]["step"])) if epochs and epochs[-1].get("seconds")
                else elapsed_s / max(1, step))
    most = per_step * max(0, total - step)
    patience = int(epochs[-1].get("patience") or 0) if epochs else 0
    if not patience or not epochs:
        return most, most, ""
    stale = int(epochs[-1].get("stale_epochs") or 0)
    per_epoch = max(1, int(epochs[-1]["step"]) // max(1, int(epochs[-1]["epoch"])))
    in_epoch = step - int(epochs[-1]["step"])  # steps of the epoch now running
    least = per_step * max(0, (patience - stale) * per_epoch - in_epoch)
    return min(least, most), most, (f"early stopping ends it after {patience} epochs without a better validation "
                                    f"accuracy ({stale} so far)")
