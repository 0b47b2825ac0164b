"""The sweep grid: ``SweepSpec`` expands its lists into units (one pruning setting with all the points
measured on it), adds the reference point, the fair control and any per-layer allocations.
"""
from __future__ import annotations

import dataclasses
from typing import Annotated

from pydantic import BeforeValidator, Field, StrictBool, StrictInt

from gemini_core.config import CompressionConfig, parse_list
from gemini_core.kinds.classifier.units import SweepUnit
from gemini_core.settings import Items, Says, settings

REFERENCE = CompressionConfig()  # unpruned fp32 dense: what every ratio is measured against


def _allocations(value) -> tuple:
    """CompressionConfigs from one config or dict, or a list of them; one per config key."""
    if isinstance(value, (CompressionConfig, dict)):
        value = (value,)
    allocations = tuple(a if isinstance(a, CompressionConfig) else CompressionConfig.from_dict(dict(a)) for a in value)
    return tuple({a.key(): a for a in allocations}.values())


# One axis of the grid: a value or a list of them, repeats dropped, order kept; an empty axis is an empty grid.
Axis = Annotated[Items, Field(min_length=1), Says("the sweep grid is empty: no {name} chosen")]


@settings
class SweepSpec:
    """A grid of configurations. Lists are tuples so the spec is hashable and storable."""

    prune_methods: Axis = ("none",)
    prune_ratios: Axis = (0.0,)
    bits: Axis = (32,)
    granularities: Axis = ("per-channel",)
    executions: Axis = ("dense",)
    finetune_steps: Axis = (0,)
    batch_size: Annotated[StrictInt, Field(ge=1, title="batch size")] = 32
    # "finetune" and/or "qat": QAT points are recovered once per (pruning, bits, granularity);
    # plain fine-tuning once per pruning setting, shared by every bit width.
    recoveries: Axis = ("finetune",)
    # Per-layer configs (e.g. from the allocator) measured next to the grid's uniform points, so
    # the front shows whether the per-layer choice beats uniform settings.
    allocations: Annotated[tuple, BeforeValidator(_allocations)] = ()
    # Fine-tune the unpruned settings too (plain recovery: fine-tune in float, then quantize each bit width,
    # as pruned points are), so quantized-only points get the same recovery budget as pruned ones; the
    # allocation-vs-uniform comparison uses it. False: unpruned points are measured as trained.
    recover_unpruned: Annotated[StrictBool, Field(title="recover_unpruned")] = False

    def __post_init__(self) -> None:
        # Every listed value is checked by the config's own rules, even those a grid would not combine (a ratio
        # with 'none'), so a sweep refuses what a single config refuses, in the same words.
        for method in self.prune_methods:
            CompressionConfig(prune_method=method, prune_ratio=0.5 if method != "none" else 0.0)
        for ratio in self.prune_ratios:
            CompressionConfig(prune_method="l1-structured", prune_ratio=ratio)
        for bits in self.bits:
            CompressionConfig(bits=bits)
        # Any spelling ("64", "g64") is kept as configs store it ("group-64"): one grid, one run id.
        object.__setattr__(self, "granularities", tuple(dict.fromkeys(
            CompressionConfig(granularity=granularity).granularity for granularity in self.granularities)))
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

    def _pruning_grid(self):
        """(method, ratio, pruned) for every pruning setting of the grid: "none" once at 0, 2:4 at 50%."""
        for method in self.prune_methods:
            ratios = (0.0,) if method == "none" else ((0.5,) if method == "2:4" else self.prune_ratios)
            for ratio in ratios:
                yield method, ratio, method != "none" and ratio > 0

    def prune_settings(self) -> list[CompressionConfig]:
        """Distinct pruning settings with plain fine-tuning (each gives one pruned model), as 32-bit dense
        configs. QAT settings, one per bit width and granularity, come from ``qat_settings``."""
        if "finetune" not in self.recoveries:
            return []
        settings: dict[tuple, CompressionConfig] = {}
        for method, ratio, pruned in self._pruning_grid():
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
        for method, ratio, pruned in self._pruning_grid():
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
        for method, ratio, pruned in self._pruning_grid():
            for steps in (s for s in self.finetune_steps if s > 0 and pruned):
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
