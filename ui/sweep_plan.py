"""Planning a sweep before it runs: the demo grid, and the rough wall time of a grid from the scenario
registry's planning figures (``estimates.py`` refines them with what this machine measured).
"""
from __future__ import annotations

DEMO_GRID = dict(prune_methods=("l1-structured",), prune_ratios=(0.0, 0.25, 0.5, 0.75), bits=(32, 8, 4, 2),
                 granularities=("per-channel",), executions=("dense", "sparse"), finetune_steps=(60,),
                 batch_size=32)

def demo_spec():
    from gemini_core.kinds.classifier.spec import SweepSpec

    return SweepSpec(**DEMO_GRID)


def planning_costs(scenario_name: str) -> tuple[float, float]:
    """(seconds per point, seconds per pruning setting) the estimate uses for this scenario (its registry entry)."""
    from gemini_core.scenarios.registry import scenario_entry  # deferred: the scenario modules load torch

    entry = scenario_entry(scenario_name)
    return entry.seconds_per_point, entry.seconds_per_setting


def estimate_seconds(spec, scenario_name: str, baseline_cached: bool = True) -> float:
    """Rough wall time of a sweep: points x per-point cost + pruning settings x per-setting cost."""
    from gemini_core.scenarios.registry import scenario_entry  # deferred: the scenario modules load torch

    entry = scenario_entry(scenario_name)
    per_point, per_setting = entry.seconds_per_point, entry.seconds_per_setting
    finetune = max(spec.finetune_steps) if spec.finetune_steps else 0
    per_setting *= max(1.0, finetune / 60.0) if entry.recovery_scales_with_steps else 1.0
    # QAT recovers once per (pruning, bits, granularity): each is a pruning setting of its own.
    settings = len(spec.prune_settings()) + len(spec.qat_settings()) + len(spec.distill_settings())
    seconds = spec.n_points() * per_point + settings * per_setting
    if not baseline_cached:
        seconds += entry.seconds_to_train
    return seconds
