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
from typing import Annotated

import torch
from pydantic import BeforeValidator

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
from gemini_core.kinds.llm.ray import run_llm_points
from gemini_core.kinds.llm.scenario import LLMScenario
from gemini_core.settings import Items, OneOf, settings

# Estimated seconds per point for SmolLM2-135M on 2 CPU cores with room (measured in docs/llm.md at 32 x 256
# calibration tokens, 1 thread, scaled to the default 16 x 256); shown as estimates only. "measure": the
# uncompressed point took 124 s and an 8-bit one 97 s at load 9-11 (about 2.2x a machine with room).
KIND = "llm"
QUALITY_METRIC = "perplexity"
SECONDS_ESTIMATE = {"measure": 50.0, "rtn": 2.0, "gptq": 240.0, "awq": 240.0, "magnitude": 2.0, "wanda": 60.0,
                    "sparsegpt": 270.0, "structured": 30.0, "recovery_step": 6.0}


def _read_settings(value):
    """A stored spec's settings dict read as LLMSettings (keys a later version added are dropped)."""
    return LLMSettings.from_dict(value) if isinstance(value, dict) else value


Execution = Annotated[str, OneOf(EXECUTIONS, says="LLM execution {value!r} is not available; choose from {choices}")]


@settings
class LLMSweepSpec:
    """The grid's axes (a value or a list, repeats dropped, order kept); each value is checked as the points
    are made, by LLMPointConfig's own rules."""

    quant_methods: Items = ()
    bits: Items = (8, 4)
    group_sizes: Items = (None,)  # None: per-channel
    prune_methods: Items = ()
    sparsities: Items = (0.5,)  # a float, or "2:4"
    mlp_ratios: Items = ()
    head_ratios: Items = ()
    recoveries: Items = ()  # "finetune" / "distill", applied to pruned and structured points
    recovery_steps: Items = (20,)
    executions: Items[Execution] = ("torch",)
    settings: Annotated[LLMSettings, BeforeValidator(_read_settings)] = LLMSettings()

    def __post_init__(self) -> None:
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
                               scenario.zero_shot(settings.zero_shot_examples), grid=config.grid,
                               should_stop=should_stop)
    record.update({"kind": KIND, "quality_metric": QUALITY_METRIC, "config": config.to_dict(),
                   "label": config.label(), "steps": steps, "settings": settings.to_dict(),
                   "ideal_size_bytes": ideal_size_bytes(compressed, config),
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


class LLMSweep:
    """An LLM sweep's side of ``workflows.sweep.run_sweep``: a unit is one point; the model is loaded once."""

    def __init__(self, scenario: LLMScenario, spec: LLMSweepSpec, remote=None,
                 progress: Callable[[str], None] | None = None):
        if not isinstance(spec, LLMSweepSpec):
            spec = LLMSweepSpec.from_dict(dict(spec))
        self.scenario, self.spec, self.remote, self.progress = scenario, spec, remote, progress
        self.lm = scenario.load(progress)
        self.loaded_at = time.time()
        check_group_sizes(self.lm.model, spec)  # one clear line before anything is stored
        check_source_grid(self.lm.metadata, spec)
        self.baseline_key = scenario.baseline_key()
        self.run_id = llm_run_id(self.baseline_key, spec)
        self.run_name = f"llm sweep ({scenario.model_spec})"
        self.scenario_name = "llm"
        self.spec_dict = spec.to_dict()
        self.description = {**scenario.describe(), "kind": KIND, "key": self.baseline_key,
                            "model_loaded_at": self.loaded_at}
        # Points measured by Ray workers (their own CPU share or host) are keyed apart from local ones.
        self.where = "local" if remote is None else "ray"

    def units(self) -> list[_PointUnit]:
        return [_PointUnit((config,)) for config in self.spec.points()]

    def point_key(self, config: LLMPointConfig) -> str:
        return llm_point_key(config, self.spec.settings, self.where)

    def config_of(self, record: dict) -> LLMPointConfig:
        return LLMPointConfig.from_dict(record["config"])

    def run_unit(self, unit, skip, should_stop) -> Iterator[dict]:
        (config,) = unit.configs
        if self.progress is not None:
            self.progress(f"measuring {config.label()}")
        try:
            record = llm_point_record(self.lm.model, self.lm.tokenizer, self.scenario, config, self.spec.settings,
                                      should_stop)
        except Cancelled:
            raise
        except Exception as exc:  # a failed point fails alone; its reason is stored
            record = {"kind": KIND, "quality_metric": QUALITY_METRIC, "config": config.to_dict(),
                      "label": config.label(), "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000]}
        record["seconds_since_model_loaded"] = round(time.time() - self.loaded_at, 2)
        yield record

    def run_remote(self, plans, should_stop) -> Iterator[dict]:
        options = {k: v for k, v in self.scenario.options.items() if v is not None}
        configs = [config for unit, _skip in plans for config in unit.configs]
        for _config, record in run_llm_points(self.remote, llm_point_record, options, self.baseline_key, configs,
                                              self.spec.settings, should_stop):
            yield {**record, "quality_metric": QUALITY_METRIC}

    def compare(self, record: dict) -> dict:
        return record  # perplexity's comparison with the reference is made from the stored records


@dataclass(frozen=True)
class _PointUnit:
    configs: tuple
