"""LLM sweeps: a grid of LLM points, each compressed, measured (``measure_llm_point``) and stored in the
results store the moment it exists, like classifier points (same runs, same points, same re-use of points
already measured for the same model, text and settings).

The grid is a union of families, not one cross-product: quantization (methods x bits x group sizes),
one-shot pruning (methods x sparsities / 2:4), structured pruning (MLP and head ratios), each pruned
point also with every recovery asked for; the uncompressed reference comes first. Points run cheapest
first, so the first figures appear quickly.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from gemini_core.config import parse_list
from gemini_core.errors import Cancelled, ConfigError
from gemini_core.kinds.llm.calibrate import linear_layers
from gemini_core.kinds.llm.point import (
    EXECUTIONS,
    PATTERNS,
    LLMPointConfig,
    LLMSettings,
    compress_llm,
    ideal_size_bytes,
    measure_llm_point,
)
from gemini_core.kinds.llm.quantize import RECIPES, group_size_of
from gemini_core.kinds.llm.scenario import LLMScenario
from gemini_core.results.store import Store
from gemini_core.kinds.llm.ray import run_llm_points
from gemini_core.workflows.ray_executor import RayExecutor

# Estimated seconds per point on 2 busy CPU cores for SmolLM2-135M (measured in docs/llm.md at 32 x 256
# calibration tokens, 1 thread, scaled to the default 16 x 256); shown as estimates only.
SECONDS_ESTIMATE = {"measure": 25.0, "rtn": 2.0, "gptq": 240.0, "awq": 240.0, "magnitude": 2.0, "wanda": 60.0,
                    "sparsegpt": 270.0, "structured": 30.0, "recovery_step": 6.0}


@dataclass(frozen=True)
class LLMSweepSpec:
    quant_methods: tuple = ()
    bits: tuple = (8, 4)
    group_sizes: tuple = (None,)  # None: per-channel
    prune_methods: tuple = ()
    sparsities: tuple = (0.5,)  # a float, or "2:4"
    mlp_ratios: tuple = ()
    head_ratios: tuple = ()
    recoveries: tuple = ()  # "finetune" / "distill", applied to pruned and structured points
    recovery_steps: tuple = (20,)
    executions: tuple = ("torch",)
    settings: LLMSettings = LLMSettings()

    def __post_init__(self) -> None:
        for name in ("quant_methods", "bits", "group_sizes", "prune_methods", "sparsities", "mlp_ratios",
                     "head_ratios", "recoveries", "recovery_steps", "executions"):
            value = getattr(self, name)
            value = (value,) if isinstance(value, (str, int, float)) or value is None else value
            object.__setattr__(self, name, tuple(dict.fromkeys(value)))
        if isinstance(self.settings, dict):
            object.__setattr__(self, "settings", LLMSettings.from_dict(self.settings))
        for execution in self.executions:
            if execution not in EXECUTIONS:
                raise ConfigError(f"LLM execution {execution!r} is not available; choose from {', '.join(EXECUTIONS)}")
        self.points()  # every point is validated now, naming the bad value

    def _pruned(self) -> list[LLMPointConfig]:
        out = []
        for method in self.prune_methods:
            for amount in self.sparsities:
                if amount == "2:4":
                    out.append(LLMPointConfig(prune_method=method, pattern="2:4"))
                else:
                    out.append(LLMPointConfig(prune_method=method, sparsity=float(amount)))
        for ratio in self.mlp_ratios:
            out.append(LLMPointConfig(mlp_ratio=float(ratio)))
        for ratio in self.head_ratios:
            out.append(LLMPointConfig(head_ratio=float(ratio)))
        return out

    def points(self) -> list[LLMPointConfig]:
        points = [LLMPointConfig()]
        for method in self.quant_methods:
            for bits in self.bits:
                for group in self.group_sizes:
                    points.append(LLMPointConfig(quant_method=method, bits=int(bits), group_size=group))
        for base in self._pruned():
            points.append(base)
            for recovery in self.recoveries:
                for steps in self.recovery_steps:
                    points.append(LLMPointConfig(**{**base.to_dict(), "recovery": recovery,
                                                    "recovery_steps": int(steps)}))
        points = [LLMPointConfig(**{**p.to_dict(), "execution": e}) for e in self.executions for p in points]
        unique = list({p.key(): p for p in points}.values())
        return sorted(unique, key=lambda p: (not p.is_reference, estimate_seconds(p)))

    def n_points(self) -> int:
        return len(self.points())

    def estimate_seconds(self) -> float:
        """An estimate (SmolLM2 on 2 busy cores): the sum over points; tiny models take far less."""
        return sum(estimate_seconds(p) for p in self.points())

    def to_dict(self) -> dict:
        data = {k: list(getattr(self, k)) for k in self.__dataclass_fields__ if k != "settings"}
        data["settings"] = self.settings.to_dict()
        return {"kind": "llm", **data}

    @classmethod
    def from_dict(cls, data: dict) -> "LLMSweepSpec":
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "kind"}
        return cls(**data)

    @classmethod
    def from_strings(cls, quant_methods="", bits="8,4", group_sizes="per-channel", prune_methods="",
                     sparsities="0.5", mlp_ratios="", head_ratios="", recoveries="", recovery_steps="20",
                     executions="torch", settings: LLMSettings | None = None) -> "LLMSweepSpec":
        """Comma lists (CLI flags, the Sweep page); group sizes: per-channel or a group size in any spelling the
        classifier's --granularity takes (64, g64, group-64; ``quantize.group_size_of``); sparsities: 0.5 or 2:4."""
        def amount(text):
            return text if text in PATTERNS[1:] else float(text)

        def items(text, kind, name):
            return tuple(parse_list(text, kind, name)) if str(text).strip() else ()

        return cls(quant_methods=items(quant_methods, str, "quantization methods"),
                   bits=items(bits, int, "bits"),
                   group_sizes=items(group_sizes, group_size_of, "group sizes") or (None,),
                   prune_methods=items(prune_methods, str, "pruning methods"),
                   sparsities=items(sparsities, amount, "sparsities"),
                   mlp_ratios=items(mlp_ratios, float, "MLP ratios"),
                   head_ratios=items(head_ratios, float, "head ratios"),
                   recoveries=items(recoveries, str, "recoveries"),
                   recovery_steps=items(recovery_steps, int, "recovery steps"),
                   executions=items(executions, str, "executions") or ("torch",),
                   settings=settings or LLMSettings())


def estimate_seconds(config: LLMPointConfig) -> float:
    seconds = SECONDS_ESTIMATE["measure"]
    if config.quant_method != "none":
        seconds += SECONDS_ESTIMATE[RECIPES[config.quant_method].algorithm]
    if config.prune_method != "none":
        seconds += SECONDS_ESTIMATE[config.prune_method]
    if config.mlp_ratio or config.head_ratio:
        seconds += SECONDS_ESTIMATE["structured"]
    return seconds + config.recovery_steps * SECONDS_ESTIMATE["recovery_step"]


def llm_point_key(config: LLMPointConfig, settings: LLMSettings, executor: str = "local") -> str:
    """The store key of a point: what was done, how it was measured and where (local points hold the thread
    count; points measured by Ray workers, on their own CPU share or host, are keyed apart)."""
    where = {"threads": torch.get_num_threads()} if executor == "local" else {"executor": executor}
    blob = json.dumps({"llm": config.key(), "settings": settings.to_dict(), **where}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def llm_run_id(baseline_key: str, spec: LLMSweepSpec) -> str:
    blob = json.dumps({"baseline": baseline_key, "spec": spec.to_dict(), "threads": torch.get_num_threads()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def llm_point_record(model, tokenizer, scenario: LLMScenario, config: LLMPointConfig, settings: LLMSettings,
                     should_stop: Callable[[], bool] | None = None) -> dict:
    """Compress one point and measure it: the record a sweep stores (the reference model is left as it is)."""
    started = time.perf_counter()
    compressed, steps = compress_llm(model, tokenizer, scenario.text_split, config, settings, should_stop)
    compress_seconds = time.perf_counter() - started
    record = measure_llm_point(compressed, tokenizer, scenario.text_split, config.execution, settings,
                               scenario.zero_shot(settings.zero_shot_examples), grid=config.grid)
    record.update({"kind": "llm", "config": config.to_dict(), "label": config.label(), "steps": steps,
                   "settings": settings.to_dict(), "ideal_size_bytes": ideal_size_bytes(compressed, config),
                   "compress_seconds": round(compress_seconds, 2), "measured_at": time.time(),
                   "seconds": round(time.perf_counter() - started, 2), "device": "cpu",
                   "model": scenario.model_spec, "status": "ok"})
    return record


def check_group_sizes(model, spec: LLMSweepSpec) -> None:
    """ConfigError naming the first group size that does not divide some decoder Linear's input columns."""
    widths = sorted({lin.in_features for lin in linear_layers(model).values()})
    for config in spec.points():
        if config.grid is not None and config.grid.group_size:
            for width in widths:
                config.grid.check_columns(width)


def check_source_grid(metadata: dict, spec: LLMSweepSpec) -> None:
    """ConfigError for an asymmetric point on the source weights' own grid: SmolLM2's came as Q4_1 (4-bit,
    groups of 32, scale + min), so asymmetric 4-bit g32 storage reproduces them and measures nothing."""
    bits, group = metadata.get("source_bits"), metadata.get("source_group_size")
    if not bits:
        return
    for config in spec.points():
        if (config.quant_method != "none" and not RECIPES[config.quant_method].symmetric
                and config.bits == bits and config.group_size == group):
            raise ConfigError(f"{config.label()} would reproduce the source weights' own grid "
                              f"({metadata.get('source_format', 'the source')}: {bits}-bit, groups of {group}, "
                              "with a zero point) and measure nothing: use another group size (e.g. 64)")


def run_llm_sweep(scenario: LLMScenario, spec: LLMSweepSpec, store: Store | None = None, force: bool = False,
                  name: str | None = None, should_stop: Callable[[], bool] | None = None,
                  progress: Callable[[str], None] | None = None,
                  executor: RayExecutor | None = None) -> Iterator[dict]:
    """Measure every point of ``spec``, storing and yielding each record as it is measured (points already
    stored for this model, text and settings are copied, ``"reused": True``). A failed point is stored
    with its reason and the sweep goes on; ``should_stop`` ends it between points (or inside calibration).
    ``executor``: a ``RayExecutor`` runs the points as Ray tasks (stored as they finish); None: here."""
    store = store or Store()
    lm = scenario.load(progress)
    loaded_at = time.time()
    check_group_sizes(lm.model, spec)  # one clear line before anything is stored
    check_source_grid(lm.metadata, spec)
    baseline_key = scenario.baseline_key()
    run_id = llm_run_id(baseline_key, spec)
    store.ensure_run(run_id, name or f"llm sweep ({scenario.model_spec})", "llm", baseline_key, spec.to_dict(),
                     {**scenario.describe(), "kind": "llm", "key": baseline_key, "model_loaded_at": loaded_at})
    finished = True
    where = "local" if executor is None else f"ray:{executor.address or 'local'}"
    todo = []
    try:
        for config in spec.points():
            if should_stop is not None and should_stop():
                finished = False
                break
            key = llm_point_key(config, spec.settings, "local" if executor is None else "ray")
            found = None if force else store.find_point(baseline_key, key)
            if found is not None:
                if found["run_id"] != run_id:
                    record = {k: v for k, v in found.items()
                              if k not in ("point_id", "run_id", "point_key", "status", "error", "baseline_key")}
                    record["reused_from"] = found["run_id"]
                    found = _store(store, run_id, baseline_key, key, record)
                yield {**found, "reused": True}
                continue
            if executor is not None:  # measured below, all at once on the cluster
                todo.append(config)
                continue
            if progress is not None:
                progress(f"measuring {config.label()}")
            try:
                record = llm_point_record(lm.model, lm.tokenizer, scenario, config, spec.settings, should_stop)
            except Cancelled:
                finished = False
                break
            except Exception as exc:  # a failed point fails alone; its reason is stored
                record = {"kind": "llm", "config": config.to_dict(), "label": config.label(), "status": "failed",
                          "error": f"{type(exc).__name__}: {exc}"[:2000]}
            record["seconds_since_model_loaded"] = round(time.time() - loaded_at, 2)
            yield _store(store, run_id, baseline_key, key, record)
        if todo and finished:
            if progress is not None:
                progress(f"measuring {len(todo)} points on Ray ({where})")
            options = {k: v for k, v in scenario.options.items() if v is not None}
            done = 0
            for config, record in run_llm_points(executor, llm_point_record, options, baseline_key, todo,
                                                 spec.settings, should_stop):
                done += 1
                yield _store(store, run_id, baseline_key, llm_point_key(config, spec.settings, "ray"), record)
            finished = done == len(todo)
    except BaseException:
        finished = False
        raise
    finally:
        store.set_status(run_id, "finished" if finished else "interrupted")


def _store(store: Store, run_id: str, baseline_key: str, key: str, record: dict) -> dict:
    point_id = store.add_point(run_id, baseline_key, key, record, status=record.get("status", "ok"),
                               error=record.get("error"))
    return {**record, "point_id": point_id, "run_id": run_id, "point_key": key, "baseline_key": baseline_key}
