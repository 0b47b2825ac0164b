"""The classifier kind's engine: what the shared workflows call for a classifier.

A sweep unit is one pruning setting with every point measured on its pruned model (``units.run_unit``);
a point's key holds its config, the measurement batch, the device and the recovery recipe; every point
is compared with the baseline on the same test examples (paired bootstrap and McNemar).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator

import torch

from gemini_core.config import CompressionConfig
from gemini_core.device import pick_device
from gemini_core.kinds.classifier import export, flags
from gemini_core.kinds.classifier import retime as _retime
from gemini_core.kinds.classifier import sensitivity as _sensitivity
from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.kinds.classifier.units import device_key, point_key, run_unit
from gemini_core.measure import memory_cap_bytes
from gemini_core.results.stats import paired_difference, parse_bits
from gemini_core.training.baseline import get_baseline, test_correctness
from gemini_core.training.loop import recovery_recipe

KIND = "classifier"
QUALITY_METRIC = "accuracy"


# The kind's modules the shared doors reach through its engine (engine(kind).export, .flags).
__all__ = ["export", "flags"]


def run_id_for(baseline_key: str, spec: SweepSpec, device) -> str:
    blob = json.dumps({"baseline": baseline_key, "spec": spec.to_dict(), "device": device_key(device)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def with_baseline_comparison(record: dict, baseline_correct: list[int] | None) -> dict:
    """``record`` with its paired accuracy difference to the baseline on the same test examples."""
    bits = parse_bits(record.get("test_correct"))
    if record.get("status", "ok") != "ok" or bits is None or baseline_correct is None \
            or len(bits) != len(baseline_correct):
        return record
    paired = paired_difference(bits, baseline_correct)
    return {**record, "accuracy_delta": paired["accuracy_delta"], "accuracy_delta_ci95": paired["accuracy_delta_ci95"],
            "accuracy_delta_measurable": paired["measurable"], "mcnemar_p": paired["mcnemar_p"],
            "paired_n": paired["paired_n"]}


def _tagged(record: dict) -> dict:
    return {**record, "kind": KIND, "quality_metric": QUALITY_METRIC}


class ClassifierSweep:
    """A classifier sweep's side of ``workflows.sweep.run_sweep``."""

    def __init__(self, scenario, spec: SweepSpec, baseline=None, device=None, remote=None,
                 latency_kwargs: dict | None = None, progress: Callable[[str], None] | None = None):
        if not isinstance(spec, SweepSpec):
            spec = SweepSpec.from_dict(dict(spec))
        memory_cap_bytes()  # a malformed GEMINI_MAX_BATCH_BYTES is a one-line error, not N failed points
        self.scenario, self.spec, self.remote, self.latency_kwargs = scenario, spec, remote, latency_kwargs
        if remote is None:
            self.device = torch.device(device or pick_device())
            self.key_device = self.device
        else:
            self.device = remote.device_type(device)  # connects; "cpu" or "cuda" on the workers
            self.key_device = remote.device_key(self.device)
        self.baseline = baseline if baseline is not None else get_baseline(scenario)
        self.baseline_key = self.baseline.key
        self.run_id = run_id_for(self.baseline_key, spec, self.key_device)
        self.run_name = f"{scenario.name} sweep"
        self.scenario_name = scenario.name
        self.spec_dict = spec.to_dict()
        self.description = self.baseline.describe()
        self.recovery = recovery_recipe(scenario.recovery_schedule)  # in every fine-tuned point's key
        correct = getattr(self.baseline, "test_correct", None)
        if correct is None:  # an adaptive baseline: classify the test set once, here
            correct = test_correctness(self.baseline.model, scenario)
        self.baseline_correct = correct

    def units(self):
        return self.spec.units()

    def point_key(self, config: CompressionConfig) -> str:
        return point_key(config, self.spec.batch_size, self.key_device, self.recovery)

    def config_of(self, record: dict) -> CompressionConfig:
        return CompressionConfig.from_dict(record["config"])

    def run_unit(self, unit, skip, should_stop) -> Iterator[dict]:
        for record in run_unit(self.baseline.model, self.scenario, unit, self.spec.batch_size, self.device,
                               should_stop, skip, self.latency_kwargs):
            yield _tagged(record)

    def run_remote(self, plans, should_stop) -> Iterator[dict]:
        for record in self.remote.run_units(self.baseline.model, self.description, plans, self.spec.batch_size,
                                            self.device, should_stop, self.latency_kwargs):
            yield _tagged(record)

    def compare(self, record: dict) -> dict:
        return with_baseline_comparison(record, self.baseline_correct)


def open_sweep(scenario, spec, *, baseline=None, device=None, remote=None, latency_kwargs=None, progress=None):
    return ClassifierSweep(scenario, spec, baseline, device, remote, latency_kwargs, progress)


def spec_from_dict(data: dict) -> SweepSpec:
    return SweepSpec.from_dict(data)


def retime(store, run, points, rounds=5, device=None, threads=None, latency_kwargs=None, progress=None):
    return _retime.retime(store, run, points, rounds=rounds, device=device, threads=threads,
                          latency_kwargs=latency_kwargs, progress=progress)


def analyse(scenario, params, store, baseline=None, device=None, force=False, progress=None, should_stop=None,
            on_profile=None):
    return _sensitivity.run_analysis(scenario, baseline if baseline is not None else get_baseline(scenario),
                                     params, store=store, device=device, force=force, progress=progress,
                                     should_stop=should_stop, on_profile=on_profile)


def sensitivity_params(data: dict):
    return _sensitivity.AnalysisParams.from_dict(data)
