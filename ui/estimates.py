"""Time estimates learned from this machine: the seconds each measured point and each pruning setting
really took (every stored record carries ``seconds`` and ``prune_seconds``), per scenario, shown as a
range. The scenario registry's planning figures (``ui.sweep_plan.planning_costs``) are the prior until enough
points of that scenario were measured here."""
from __future__ import annotations

import statistics

from gemini_core.errors import GeminiError
from gemini_core.results.store import Store

from .sweep_plan import estimate_seconds, planning_costs

MIN_SAMPLES = 4      # fewer measured points than this: the registry's figures
RECENT_RUNS = 6      # the newest runs of the scenario are enough and keep this cheap


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
    point = [float(p["seconds"]) for p in records if isinstance(p.get("seconds"), (int, float)) and p["seconds"] > 0]
    if len(point) < MIN_SAMPLES:
        return None
    settings = {}
    for p in records:
        cfg = p.get("config") or {}
        seconds = p.get("prune_seconds")
        if isinstance(seconds, (int, float)) and float(cfg.get("prune_ratio") or 0) > 0:
            steps = float(cfg.get("finetune_steps") or 0)
            key = (p.get("run_id"), cfg.get("prune_method"), cfg.get("prune_ratio"), steps)
            settings[key] = float(seconds) / max(1.0, steps / 60.0)
    return {"point": _quartiles(point), "setting": _quartiles(list(settings.values())) if settings else None,
            "n": len(point)}


def estimate_range(spec, scenario: str, baseline_cached: bool = True) -> tuple[float, float, str]:
    """(low, high, where from) seconds for a sweep: from this machine's measurements when there are enough,
    else the registry's planning figure with a ±50% range."""
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
