"""Recommender sweeps: the grid (``RecommendSweepSpec``) and the kind's side of ``workflows.sweep.run_sweep``
(``RecommendSweep``).

The grid is a union of structural families, each crossed with the quantization variants:

- structures: the uncompressed model first; then rare-row pruning ratios, dimension-pruning ratios, low
  ranks, quotient-remainder divisors and tower-pruning ratios, one family at a time, every one recovered
  with the same ``recovery_steps`` (one budget for every point that changed structure), and the uncompressed
  model fine-tuned on that budget (the control: what the recovery alone buys);
- quantization variants of every structure: float32 and each of ``bits`` (row-wise), plus for each hot share
  the mixed variants (hot rows 8-bit, the rest at each of ``bits`` below 8, 4 when none is).

Library peers (``spec.peers``: implicit's ALS / BPR, TorchRec's int8 / int4 tables; ``peer_points.py``) are
units of their own, measured after the points on the same split by the same code and stored in the same run,
marked ``peer`` (never shipped, never on the front).

A sweep unit is one structure with its variants: the structure is built and recovered once, each variant
quantizes a copy of it (the control is measured in float only). The uncompressed reference is the first
point. The baseline is trained once (``baseline.get_recommend_baseline``: cached by everything that changes
its weights) when the session opens.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from gemini_core.kinds.recommend import metrics
from gemini_core.kinds.recommend.baseline import RecommendBaseline, get_recommend_baseline
from gemini_core.kinds.recommend.compress import RecommendPointConfig
from gemini_core.kinds.recommend.points import (
    KIND,
    RecommendSweepSpec,
    RecommendUnit,
    check_spec,
    config_from_dict,
    point_key,
    run_id_for,
    unit_records,
)
from gemini_core.kinds.recommend.ray import run_recommend_units
from gemini_core.kinds.recommend.scenario import RecommendScenario
from gemini_core.progress import ProgressEvent


class RecommendSweep:
    """A recommender sweep's side of ``workflows.sweep.run_sweep``: a unit is one structure and its variants."""

    def __init__(self, scenario: RecommendScenario, spec: RecommendSweepSpec, remote=None,
                 progress: Callable[[str], None] | None = None, baseline: RecommendBaseline | None = None):
        if not isinstance(spec, RecommendSweepSpec):
            spec = RecommendSweepSpec.from_dict(dict(spec))
        self.remote = remote
        self.scenario, self.spec, self.progress = scenario, spec, progress
        check_spec(spec, scenario)
        self.split = scenario.split
        self.baseline = baseline if baseline is not None else get_recommend_baseline(
            scenario, spec.train, progress=self._event)
        self.baseline_key = self.baseline.key
        self.run_id = run_id_for(self.baseline_key, spec)
        self.run_name = f"recommend sweep ({spec.train.model}, dim {spec.train.dim})"
        self.scenario_name = scenario.name
        self.spec_dict = spec.to_dict()
        self.description = {**scenario.describe(), "kind": KIND, "key": self.baseline_key,
                            **self.baseline.describe()}
        self._reference: dict | None = None

    def _event(self, event: ProgressEvent) -> None:
        if self.progress is not None and event.kind in ("message", "epoch", "chosen", "cached"):
            self.progress(str(event))

    def units(self) -> list[RecommendUnit]:
        return self.spec.units()

    def point_key(self, config: RecommendPointConfig) -> str:
        return point_key(config, self.spec.measure, "local" if self.remote is None else "ray:cpu")

    def config_of(self, record: dict):
        return config_from_dict(record["config"])

    def run_unit(self, unit: RecommendUnit, skip, should_stop) -> Iterator[dict]:
        yield from unit_records(self.baseline.model, self.split, self.spec, unit, skip, should_stop,
                                self.progress, self.scenario.name)

    def run_remote(self, plans, should_stop) -> Iterator[dict]:
        """The units as Ray tasks (``kinds/recommend/ray.py``), each record as it arrives."""
        yield from run_recommend_units(self.remote, self.baseline.model, self.scenario, self.spec, plans,
                                       should_stop)

    def reference(self) -> dict:
        """The uncompressed model's evaluation (deterministic: the stored reference point holds the same
        per-user values), made once per session for the paired comparisons."""
        if self._reference is None:
            self._reference = metrics.evaluate(self.baseline.model, self.split, "test",
                                               full=self.spec.measure.full_ranking)
        return self._reference

    def compare(self, record: dict) -> dict:
        if record.get("status", "ok") != "ok" or "user_ndcg_at_10" not in record:
            return record
        return metrics.with_reference_comparison(record, self.reference())

