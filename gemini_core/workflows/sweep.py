"""Sweeps: expand a grid, prune once per pruning setting, measure every bit width and execution on it.

The unit of work (``run_unit``: one pruning setting with all its points) is a plain function
separate from the loop (``run_sweep``) so another executor can run units elsewhere. Points
stream out as they are measured and are stored the moment they exist; a re-run skips points
already stored for the same baseline. The grid is ``sweep_spec.SweepSpec``; timing a stored run
again is ``retime.py``.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable, Iterator

import torch

from gemini_core.config import CompressionConfig
from gemini_core.device import pick_device
from gemini_core.measure import memory_cap_bytes
from gemini_core.results.stats import paired_difference, parse_bits
from gemini_core.results.store import Store
from gemini_core.scenarios.base import Scenario
from gemini_core.training.baseline import test_correctness
from gemini_core.training.loop import recovery_recipe
from gemini_core.workflows.executors import make_executor
from gemini_core.workflows.sweep_spec import SweepSpec
from gemini_core.workflows.units import SweepUnit, device_key, point_key, run_unit


def run_id_for(baseline_key: str, spec: SweepSpec, device) -> str:
    blob = json.dumps({"baseline": baseline_key, "spec": spec.to_dict(), "device": device_key(device)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_sweep(scenario: Scenario, baseline, spec: SweepSpec, store: Store | None = None, device=None,
              force: bool = False, name: str | None = None, should_stop: Callable[[], bool] | None = None,
              latency_kwargs: dict | None = None, executor="local", ray_address: str | None = None) -> Iterator[dict]:
    """Run ``spec`` on ``baseline`` (from ``train.get_baseline``), storing and yielding each point.

    Yields the stored record of every point, measured now or found in the store
    (``"reused": True``). Failed points are stored with their reason and the sweep goes on.
    ``executor``: "local" (this process, one unit after another) or "ray" (one task per unit on
    the Ray cluster at ``ray_address``, a local instance when None; see ray_executor.py).
    """
    memory_cap_bytes()  # a malformed GEMINI_MAX_BATCH_BYTES is a one-line error, not N failed points
    store = store or Store()
    remote = make_executor(executor, ray_address)
    if remote is None:
        device = torch.device(device or pick_device())
        key_device = device
    else:
        device = remote.device_type(device)  # connects; "cpu" or "cuda" on the workers
        key_device = remote.device_key(device)
    run_id = run_id_for(baseline.key, spec, key_device)
    recovery = recovery_recipe(scenario.recovery_schedule)  # in every fine-tuned point's key
    store.ensure_run(run_id, name or f"{scenario.name} sweep", scenario.name, baseline.key, spec.to_dict(),
                     baseline.describe())
    finished = True
    baseline_correct = getattr(baseline, "test_correct", None)
    if baseline_correct is None:  # an adaptive baseline: classify the test set once, here
        baseline_correct = test_correctness(baseline.model, scenario)

    def reuse(unit: SweepUnit) -> Iterator[dict]:
        """Yield the unit's points already stored (copied into this run); returns their config keys."""
        skip = set()
        for config in unit.configs:
            if force:
                continue
            key = point_key(config, spec.batch_size, key_device, recovery)
            found = store.find_point(baseline.key, key)
            if found is None:
                continue
            skip.add(config.key())
            if found["run_id"] != run_id:  # measured in another run: copy it into this one
                record = {k: v for k, v in found.items()
                          if k not in ("point_id", "run_id", "point_key", "status", "error", "baseline_key")}
                record["reused_from"] = found["run_id"]
                found = _store(store, run_id, baseline.key, key, with_baseline_comparison(record, baseline_correct))
            yield {**found, "reused": True}
        return skip

    try:
        if remote is None:
            for unit in spec.units():
                skip = yield from reuse(unit)
                for record in run_unit(baseline.model, scenario, unit, spec.batch_size, device, should_stop, skip,
                                       latency_kwargs):
                    config = CompressionConfig.from_dict(record["config"])
                    yield _store(store, run_id, baseline.key, point_key(config, spec.batch_size, device, recovery),
                                 with_baseline_comparison(record, baseline_correct))
                if should_stop is not None and should_stop():
                    finished = False
                    break
        else:
            plans = []
            for unit in spec.units():
                skip = yield from reuse(unit)
                if any(c.key() not in skip for c in unit.configs):
                    plans.append((unit, frozenset(skip)))
            for record in remote.run_units(baseline.model, baseline.describe(), plans, spec.batch_size, device,
                                           should_stop, latency_kwargs):
                config = CompressionConfig.from_dict(record["config"])
                yield _store(store, run_id, baseline.key, point_key(config, spec.batch_size, key_device, recovery),
                             with_baseline_comparison(record, baseline_correct))
            if should_stop is not None and should_stop():
                finished = False
    except BaseException:
        finished = False
        raise
    finally:
        store.set_status(run_id, "finished" if finished else "interrupted")


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


def _store(store: Store, run_id: str, baseline_key: str, key: str, record: dict) -> dict:
    point_id = store.add_point(run_id, baseline_key, key, record, status=record.get("status", "ok"),
                               error=record.get("error"))
    return {**record, "point_id": point_id, "run_id": run_id, "point_key": key, "baseline_key": baseline_key}
