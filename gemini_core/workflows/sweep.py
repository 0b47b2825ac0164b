"""Sweeps: expand a grid, prune once per pruning setting, measure every bit width and execution on it.

The unit of work (``run_unit``: one pruning setting with all its points) is a plain function
separate from the loop (``run_sweep``) so another executor can run units elsewhere. Points
stream out as they are measured and are stored the moment they exist; a re-run skips points
already stored for the same baseline.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from gemini_core.compress import compress, prune_copy
from gemini_core.config import CompressionConfig, parse_list
from gemini_core.device import compute_threads, device_info, pick_device
from gemini_core.errors import ConfigError
from gemini_core.measure import measure_latency, memory_cap_bytes
from gemini_core.results.stats import paired_difference, parse_bits
from gemini_core.results.store import Store
from gemini_core.scenarios.base import Scenario
from gemini_core.training.baseline import test_correctness
from gemini_core.workflows.baselines import baseline_from_description
from gemini_core.workflows.executors import make_executor
from gemini_core.workflows.units import SweepUnit, device_key, point_key, run_unit

REFERENCE = CompressionConfig()  # unpruned fp32 dense: what every ratio is measured against


@dataclass(frozen=True)
class SweepSpec:
    """A grid of configurations. Lists are tuples so the spec is hashable and storable."""

    prune_methods: tuple = ("none",)
    prune_ratios: tuple = (0.0,)
    bits: tuple = (32,)
    granularities: tuple = ("per-channel",)
    executions: tuple = ("dense",)
    finetune_steps: tuple = (0,)
    batch_size: int = 32
    # "finetune" and/or "qat": QAT points are recovered once per (pruning, bits, granularity);
    # plain fine-tuning once per pruning setting, shared by every bit width.
    recoveries: tuple = ("finetune",)
    # Per-layer configs (e.g. from the allocator) measured next to the grid's uniform points, so
    # the front shows whether the per-layer choice beats uniform settings.
    allocations: tuple = ()
    # Fine-tune the unpruned settings too (plain recovery: fine-tune in float, then quantize each bit width,
    # as pruned points are), so quantized-only points get the same recovery budget as pruned ones; the
    # allocation-vs-uniform comparison uses it. False: unpruned points are measured as trained.
    recover_unpruned: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.recover_unpruned, bool):
            raise ConfigError(f"recover_unpruned must be true or false, not {self.recover_unpruned!r}")
        if isinstance(self.allocations, (CompressionConfig, dict)):
            object.__setattr__(self, "allocations", (self.allocations,))
        allocations = tuple(a if isinstance(a, CompressionConfig) else CompressionConfig.from_dict(dict(a))
                            for a in self.allocations)
        object.__setattr__(self, "allocations", tuple({a.key(): a for a in allocations}.values()))
        for name in ("prune_methods", "prune_ratios", "bits", "granularities", "executions", "finetune_steps",
                     "recoveries"):
            value = getattr(self, name)
            if isinstance(value, (str, int, float)):
                value = (value,)
            value = tuple(dict.fromkeys(value))  # keep order, drop repeats
            if not value:
                raise ConfigError(f"the sweep grid is empty: no {name.replace('_', ' ')} chosen")
            object.__setattr__(self, name, value)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch size {self.batch_size!r} must be a whole number of at least 1")
        # Check every listed value, even those a grid would not combine (a ratio with 'none').
        for method in self.prune_methods:
            CompressionConfig(prune_method=method, prune_ratio=0.5 if method != "none" else 0.0)
        for ratio in self.prune_ratios:
            CompressionConfig(prune_method="l1-structured", prune_ratio=ratio)
        for bits in self.bits:
            CompressionConfig(bits=bits)
        for granularity in self.granularities:
            CompressionConfig(granularity=granularity)
        for execution in self.executions:
            CompressionConfig(execution=execution)
        for steps in self.finetune_steps:
            CompressionConfig(finetune_steps=steps)
        for recovery in self.recoveries:
            CompressionConfig(recovery=recovery)

    def to_dict(self) -> dict:
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}
        if data["recoveries"] == ["finetune"]:
            del data["recoveries"]  # the default: run ids of specs from before the field existed stay the same
        if self.allocations:
            data["allocations"] = [a.to_dict() for a in self.allocations]
        else:
            del data["allocations"]  # likewise
        if not self.recover_unpruned:
            del data["recover_unpruned"]  # likewise
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "SweepSpec":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @classmethod
    def from_strings(cls, prune_methods="none", prune_ratios="0", bits="32", granularities="per-channel",
                     executions="dense", finetune_steps="0", batch_size=32, recoveries="finetune") -> "SweepSpec":
        """Parse comma lists (CLI flags), naming the bad item on error."""
        def integer(text):
            return int(str(text))

        return cls(
            prune_methods=tuple(parse_list(prune_methods, str, "prune methods")),
            prune_ratios=tuple(parse_list(prune_ratios, float, "prune ratios")),
            bits=tuple(parse_list(bits, integer, "bits")),
            granularities=tuple(parse_list(granularities, str, "granularity")),
            executions=tuple(parse_list(executions, str, "execution")),
            finetune_steps=tuple(parse_list(finetune_steps, integer, "fine-tune steps")),
            batch_size=batch_size if isinstance(batch_size, int) else parse_list(batch_size, integer, "batch size")[0],
            recoveries=tuple(parse_list(recoveries, str, "recovery")),
        )

    def prune_settings(self) -> list[CompressionConfig]:
        """Distinct pruning settings with plain fine-tuning (each gives one pruned model), as 32-bit dense
        configs. QAT settings, one per bit width and granularity, come from ``qat_settings``."""
        if "finetune" not in self.recoveries:
            return []
        settings: dict[tuple, CompressionConfig] = {}
        for method in self.prune_methods:
            ratios = (0.0,) if method == "none" else ((0.5,) if method == "2:4" else self.prune_ratios)
            for ratio in ratios:
                pruned = method != "none" and ratio > 0
                for steps in (self.finetune_steps if pruned or self.recover_unpruned else (0,)):
                    if not pruned:
                        config = CompressionConfig(finetune_steps=steps)
                    else:
                        config = CompressionConfig(prune_method=method, prune_ratio=ratio, finetune_steps=steps)
                    settings.setdefault(config.prune_key, config)
        return list(settings.values())

    def qat_settings(self) -> list[CompressionConfig]:
        """QAT-recovered settings: one per (pruning, steps > 0, bits <= 8, granularity), unpruned included."""
        if "qat" not in self.recoveries:
            return []
        settings: dict[tuple, CompressionConfig] = {}
        for method in self.prune_methods:
            ratios = (0.0,) if method == "none" else ((0.5,) if method == "2:4" else self.prune_ratios)
            for ratio in ratios:
                pruned = method != "none" and ratio > 0
                for steps in self.finetune_steps:
                    for bits in self.bits:
                        for granularity in (self.granularities if bits <= 8 else ()):
                            config = CompressionConfig(
                                prune_method=method if pruned else "none", prune_ratio=ratio if pruned else 0.0,
                                finetune_steps=steps, bits=bits, granularity=granularity, recovery="qat")
                            if config.is_qat:  # 0 steps: no recovery, the plain point
                                settings.setdefault(config.prune_key, config)
        return list(settings.values())

    def distill_settings(self) -> list[CompressionConfig]:
        """Distillation-recovered settings: one per (pruning, steps > 0), as 32-bit dense configs; each
        pruned model is then stored at every bit width, as plain fine-tuning's are."""
        if "distill" not in self.recoveries:
            return []
        settings: dict[tuple, CompressionConfig] = {}
        for method in self.prune_methods:
            ratios = () if method == "none" else ((0.5,) if method == "2:4" else self.prune_ratios)
            for ratio in (r for r in ratios if r > 0):
                for steps in (s for s in self.finetune_steps if s > 0):
                    config = CompressionConfig(prune_method=method, prune_ratio=ratio, finetune_steps=steps,
                                               recovery="distill")
                    settings.setdefault(config.prune_key, config)
        return list(settings.values())

    def configs_for(self, prune_setting: CompressionConfig) -> list[CompressionConfig]:
        out: dict[str, CompressionConfig] = {}
        if prune_setting.is_qat:  # recovered for one bit width and granularity: only its executions
            for execution in self.executions:
                config = dataclasses.replace(prune_setting, execution=execution)
                out.setdefault(config.key(), config)
            return list(out.values())
        for bits in self.bits:
            # Granularity means nothing for float points: one point, not one per granularity.
            for granularity in (self.granularities if bits <= 8 else ("per-channel",)):
                for execution in self.executions:
                    config = CompressionConfig(
                        prune_method=prune_setting.prune_method, prune_ratio=prune_setting.prune_ratio,
                        finetune_steps=prune_setting.finetune_steps, bits=bits, granularity=granularity,
                        execution=execution, recovery=prune_setting.recovery)
                    out.setdefault(config.key(), config)
        return list(out.values())

    def configs(self) -> list[CompressionConfig]:
        return [c for u in self._grid_units() for c in u.configs]

    def _has_qat_counterpart(self, config: CompressionConfig) -> bool:
        """Whether ``config`` (plain recovery, bits <= 8) is replaced by a QAT-recovered point."""
        if config.bits > 8:
            return False
        if config.prune_key[0] == "none":
            return any(steps > 0 for steps in self.finetune_steps)
        return config.finetune_steps > 0

    def _replaced(self, config: CompressionConfig) -> bool:
        """Whether a plain-recovery ``config`` is replaced by a QAT- or distillation-recovered point."""
        if "qat" in self.recoveries and self._has_qat_counterpart(config):
            return True
        return "distill" in self.recoveries and config.prunes and config.finetune_steps > 0

    def _grid_units(self) -> list["SweepUnit"]:
        if "finetune" in self.recoveries:
            units = [SweepUnit(s, tuple(self.configs_for(s))) for s in self.prune_settings()]
        else:
            # Points no chosen recovery can make (unpruned, no steps; float points for QAT) keep plain recovery.
            plain = dataclasses.replace(self, recoveries=("finetune",))
            units = []
            for s in plain.prune_settings():
                configs = tuple(c for c in plain.configs_for(s) if not self._replaced(c))
                if configs:
                    units.append(SweepUnit(s, configs))
        seen = {c.key() for u in units for c in u.configs}
        for s in self.distill_settings():
            configs = tuple(c for c in self.configs_for(s) if c.key() not in seen)
            if configs:
                units.append(SweepUnit(s, configs))
                seen.update(c.key() for c in configs)
        for s in self.qat_settings():
            configs = tuple(c for c in self.configs_for(s) if c.key() not in seen)
            if configs:
                units.append(SweepUnit(s, configs))
        return units

    def units(self) -> list["SweepUnit"]:
        units = self._grid_units()
        seen = {c.key() for u in units for c in u.configs}
        for config in self.allocations:  # each is pruned as it says (per-layer ratios included), then measured
            if config.key() not in seen:
                units.append(SweepUnit(config, (config,)))
                seen.add(config.key())
        if not any(REFERENCE.key() == c.key() for u in units for c in u.configs):
            # The unpruned fp32 dense point anchors every speed-up and size ratio.
            units.insert(0, SweepUnit(CompressionConfig(), (REFERENCE,)))
        control = self.control()
        if control is not None and not any(control.key() == c.key() for u in units for c in u.configs):
            units.insert(1, SweepUnit(control, (control,)))
        return units

    def control(self) -> CompressionConfig | None:
        """The fair control: the unpruned fp32 model recovered with as many steps (same rate, same data) as
        the grid's most recovered points, so their accuracy can be read against a model trained as long.
        None when no point is recovered."""
        steps = max(self.finetune_steps)
        if steps <= 0 or not any(m != "none" for m in self.prune_methods):
            return None
        return CompressionConfig(finetune_steps=steps)

    def n_points(self) -> int:
        return sum(len(u.configs) for u in self.units())


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
            key = point_key(config, spec.batch_size, key_device)
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
                    yield _store(store, run_id, baseline.key, point_key(config, spec.batch_size, device),
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
                yield _store(store, run_id, baseline.key, point_key(config, spec.batch_size, key_device),
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



def retime_run(store: Store, run_id: str, rounds: int = 5, device=None, threads: int | None = None,
               latency_kwargs: dict | None = None, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Time every ok point of a run again, interleaved, in one pass, and store the new latencies.

    Each point is rebuilt from the run's baseline (recovery is deterministic, so it is the same model),
    then ``rounds`` rounds each time every point once in turn, so a change of load touches all points
    alike. Runs at ``threads`` (default: the thread count the run's reference point was measured at).
    Each point gets ``latency_ms_p10/p50/p90`` and ``latency_runs`` over all rounds, the conditions
    (load, threads, cores, CPU) and ``retimed_at``; its earlier figures are kept under ``previous_latency``.
    """
    if rounds < 1:
        raise ConfigError(f"rounds {rounds} must be at least 1")
    run = store.get_run(run_id)
    points = [p for p in store.points(run_id) if p.get("status") == "ok"]
    if not points:
        raise ConfigError(f"run {run_id} has no measured points to re-time")
    if not run.get("baseline"):
        raise ConfigError(f"run {run_id} has no stored baseline description; run the sweep again")
    if run["baseline"].get("kind") == "llm":
        raise ConfigError(f"run {run_id} is an LLM run; re-timing is for classifier runs (sweep it again with --force)")
    device = torch.device(device or pick_device())
    baseline = baseline_from_description(run["baseline"], device=device)
    scenario = baseline.scenario
    if threads is None and device.type == "cpu":
        reference = next((p for p in points if CompressionConfig.from_dict(p["config"]).key() == REFERENCE.key()),
                         points[0])
        threads = reference.get("threads")
    models, pruned_by_key = [], {}
    for point in points:
        config = CompressionConfig.from_dict(point["config"])
        if progress is not None:
            progress(f"rebuilding {config.label()}")
        if config.prune_key not in pruned_by_key:  # prune and recover once per setting, as the sweep does
            pruned_by_key[config.prune_key] = prune_copy(baseline.model, config, scenario, device=device)
        compressed = compress(baseline.model, config, scenario, device=device, pruned=pruned_by_key[config.prune_key])
        batch = scenario.splits.test.first(int(point.get("batch_size") or 32)).inputs
        models.append((point, compressed, batch))
    samples: dict[int, list[float]] = {p["point_id"]: [] for p in points}
    kwargs = {"min_runs": 5, "min_seconds": 0.1, "warmup": 2, **(latency_kwargs or {})}
    with compute_threads(int(threads) if threads and device.type == "cpu" else None):
        for r in range(rounds):
            if progress is not None:
                progress(f"round {r + 1} of {rounds}")
            for point, compressed, batch in models:
                timing = measure_latency(compressed.model, batch, device, keep_samples=True, **kwargs)
                samples[point["point_id"]].extend(timing.pop("samples_ms"))
        info = device_info(device)
    updated = []
    for point, _, _ in models:
        times = sorted(samples[point["point_id"]])

        def quantile(q: float) -> float:
            return times[min(len(times) - 1, int(round(q * (len(times) - 1))))]

        record = {k: v for k, v in point.items() if k not in ("point_id", "run_id", "point_key", "baseline_key")}
        record["previous_latency"] = {k: point.get(k) for k in ("latency_ms_p10", "latency_ms_p50", "latency_ms_p90",
                                                                 "latency_runs", "threads", "load_avg_1m")}
        record.update({"latency_ms_p10": quantile(0.1), "latency_ms_p50": quantile(0.5),
                       "latency_ms_p90": quantile(0.9), "latency_ms_min": times[0], "latency_runs": len(times),
                       "retime_rounds": rounds, "retimed_at": time.time(), "threads": info["threads"],
                       "load_avg_1m": info["load_avg_1m"], "cores": info["cores"], "cpu": info["cpu"],
                       "cpu_flags": info["cpu_flags"], "device": info["device"]})
        store.add_point(run_id, point["baseline_key"], point["point_key"], record, status="ok")
        updated.append({**record, "point_id": point["point_id"], "run_id": run_id})
    return updated
