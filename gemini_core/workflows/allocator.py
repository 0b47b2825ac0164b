"""Turn a sensitivity profile into per-layer settings that meet a budget.

Greedy, on the measured profile (``sensitivity.py``):

- ``smallest-size``: start from every layer in float and every group unpruned; repeatedly take
  the one change (a layer to fewer bits, a group to a higher ratio) with the most predicted
  weight bytes saved per predicted point of accuracy drop, as long as the summed predicted drop
  stays within ``max_accuracy_drop_points``.
- ``speedup``: same start; take the change with the most predicted milliseconds saved per
  predicted point of drop until the predicted latency reaches ``1 / target_speedup`` of the
  measured one (the drop budget, if given, still applies).

Every figure it returns is a **prediction**: drops are added up layer by layer as if they were
independent, sizes count layer weights only, latencies scale each layer's measured time by the
share of channels kept (and use its measured int8 time at 8 bits). Measure the resulting
config (a sweep point) for the real figures.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from gemini_core.config import CompressionConfig
from gemini_core.errors import ConfigError
from gemini_core.kinds.classifier.spec import REFERENCE, SweepSpec
from gemini_core.results.sensitivity import SensitivityProfile
from gemini_core.workflows.sweep import run_sweep

OBJECTIVES = ("smallest-size", "speedup")
_EPS_POINTS = 0.05  # a change measured as free still costs a little: prefer the bigger saving among free ones


@dataclass
class Allocation:
    config: CompressionConfig
    rows: list  # one per layer and per pruned group: what was chosen and its predicted drop
    predicted: dict  # predicted_accuracy_drop_points, predicted_weight_bytes, predicted_latency_ms, ...
    objective: str
    budget: dict
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "label": self.config.label(), "rows": self.rows,
                "predicted": self.predicted, "objective": self.objective, "budget": self.budget, "notes": self.notes}


def _as_profile(profile) -> SensitivityProfile:
    return profile if isinstance(profile, SensitivityProfile) else SensitivityProfile.from_dict(profile)


class _Model:
    """The additive prediction over a profile."""

    def __init__(self, profile: SensitivityProfile):
        self.profile = profile
        self.layers = {e["layer"]: e for e in profile.quantization}
        self.groups = {e["group"]: e for e in profile.pruning}
        self.quant_drop = {name: {r["bits"]: r for r in e["results"]} for name, e in self.layers.items()}
        self.prune_drop = {name: {r["ratio"]: r for r in e["results"]} for name, e in self.groups.items()}
        latency = profile.latency or {}
        self.ms = {r["layer"]: r for r in latency.get("layers", [])}
        self.other_ms = latency.get("other_ms_p50", 0.0)
        self.total_ms = latency.get("total_ms_p50")
        self.members = {name: set(e["out_layers"]) | set(e["in_layers"]) for name, e in self.groups.items()}

    def drop(self, bits: dict, ratios: dict) -> tuple[float, float]:
        """(predicted accuracy drop in points, predicted loss increase), drops below 0 counted as 0."""
        points = loss = 0.0
        for name, b in bits.items():
            if b < 32 and b in self.quant_drop.get(name, {}):
                r = self.quant_drop[name][b]
                points, loss = points + max(r["drop_points"], 0.0), loss + max(r["loss_increase"], 0.0)
        for name, ratio in ratios.items():
            if ratio > 0:
                r = self.prune_drop[name][ratio]
                points, loss = points + max(r["drop_points"], 0.0), loss + max(r["loss_increase"], 0.0)
        return points, loss

    def keep(self, layer: str, ratios: dict) -> float:
        kept = 1.0
        for name, ratio in ratios.items():
            if ratio > 0 and layer in self.members[name]:
                kept *= 1.0 - ratio
        return kept

    def weight_bytes(self, bits: dict, ratios: dict) -> float:
        return sum(e["params"] * self.keep(name, ratios) * bits[name] / 8 for name, e in self.layers.items())

    def latency_ms(self, bits: dict, ratios: dict) -> float | None:
        if self.total_ms is None:
            return None
        total = self.other_ms
        for name, row in self.ms.items():
            ms = row.get("int8_ms_p50", row["ms_p50"]) if bits.get(name) == 8 else row["ms_p50"]
            total += ms * self.keep(name, ratios)
        return total

    def predicted(self, bits: dict, ratios: dict) -> dict:
        points, loss = self.drop(bits, ratios)
        out = {"predicted_accuracy_drop_points": points, "predicted_loss_increase": loss,
               "predicted_weight_bytes": int(self.weight_bytes(bits, ratios)),
               "fp32_weight_bytes": int(self.weight_bytes({n: 32 for n in bits}, {}))}
        latency = self.latency_ms(bits, ratios)
        if latency is not None:
            out["predicted_latency_ms"] = latency
            out["measured_latency_ms"] = self.total_ms
            out["predicted_speedup"] = self.total_ms / latency if latency > 0 else None
        return out


def check_budget(objective: str, max_accuracy_drop_points: float | None = None, target_speedup: float | None = None,
                 max_loss_increase: float | None = None) -> None:
    """ConfigError naming what is wrong with a budget; callable before any analysis runs."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown allocation objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    for what, value in (("accuracy-drop budget", max_accuracy_drop_points), ("loss budget", max_loss_increase),
                        ("target speed-up", target_speedup)):
        if value is not None and not math.isfinite(float(value)):
            raise ConfigError(f"the {what} {value} is not a finite number")
    if max_accuracy_drop_points is not None and max_accuracy_drop_points > 100:
        raise ConfigError(f"the accuracy-drop budget {max_accuracy_drop_points} is above 100 points")
    if max_accuracy_drop_points is not None and max_accuracy_drop_points < 0:
        raise ConfigError(f"the accuracy-drop budget {max_accuracy_drop_points} must be 0 or more points")
    if max_loss_increase is not None and max_loss_increase < 0:
        raise ConfigError(f"the loss budget {max_loss_increase} must be 0 or more")
    if objective == "speedup":
        if target_speedup is None or target_speedup <= 1.0:
            raise ConfigError(f"target speed-up {target_speedup!r} must be above 1 (e.g. 3 for 3x)")
    elif max_accuracy_drop_points is None and max_loss_increase is None:
        raise ConfigError("the smallest-size objective needs an accuracy-drop budget in points (or a loss budget)")


def allocate(profile, objective: str = "smallest-size", max_accuracy_drop_points: float | None = 1.0,
             target_speedup: float | None = None, bits_options=None, allow_pruning: bool = True,
             finetune_steps: int = 0, execution: str = "dense", max_loss_increase: float | None = None) -> Allocation:
    """Per-layer settings for ``objective`` under the budget; see the module docstring.

    ``max_loss_increase`` (optional, in nats of mean cross-entropy): a finer budget than accuracy on
    small validation sets, where a single layer rarely flips a whole example.
    """
    profile = _as_profile(profile)
    check_budget(objective, max_accuracy_drop_points, target_speedup, max_loss_increase)
    if not profile.quantization and not profile.pruning:
        raise ConfigError("the sensitivity profile is empty: run the analysis (quantization and/or pruning) first")
    model = _Model(profile)
    if objective == "speedup" and model.total_ms is None:
        raise ConfigError("the speed-up objective needs the latency profile: run the analysis with it")
    loss_budget = max_loss_increase if max_loss_increase is not None else float("inf")
    measured_bits = sorted({r["bits"] for e in profile.quantization for r in e["results"]}, reverse=True)
    options = sorted(set(bits_options or measured_bits), reverse=True)
    missing = [b for b in options if b != 32 and b not in measured_bits]
    if missing:
        raise ConfigError(f"bits {', '.join(map(str, missing))} were not profiled; profiled: "
                          f"{', '.join(map(str, measured_bits)) or 'none'}")
    budget = max_accuracy_drop_points if max_accuracy_drop_points is not None else float("inf")
    bits = {name: 32 for name in model.layers}
    ratios = {name: 0.0 for name in model.groups} if allow_pruning else {}
    target_ms = model.total_ms / target_speedup if objective == "speedup" else None

    def saving(new_bits, new_ratios) -> float:
        if objective == "speedup":
            return model.latency_ms(bits, ratios) - model.latency_ms(new_bits, new_ratios)
        return model.weight_bytes(bits, ratios) - model.weight_bytes(new_bits, new_ratios)

    while True:
        if target_ms is not None and model.latency_ms(bits, ratios) <= target_ms:
            break
        points, loss = model.drop(bits, ratios)
        best, best_score = None, 0.0
        candidates = [("bits", n, b) for n in bits for b in options
                      if b < bits[n] and (b == 32 or b in model.quant_drop[n])]
        candidates += [("ratio", n, r) for n in ratios for r in model.prune_drop[n] if r > ratios[n]]
        for kind, name, value in candidates:
            new_bits = {**bits, name: value} if kind == "bits" else bits
            new_ratios = {**ratios, name: value} if kind == "ratio" else ratios
            new_points, new_loss = model.drop(new_bits, new_ratios)
            if new_points > budget + 1e-9 or new_loss > loss_budget + 1e-12:
                continue
            gain = saving(new_bits, new_ratios)
            if gain <= 0:
                continue
            score = gain / (new_points - points + max(new_loss - loss, 0.0) + _EPS_POINTS)
            if score > best_score:
                best, best_score = (new_bits, new_ratios), score
        if best is None:
            break
        bits, ratios = best
    notes = []
    predicted = model.predicted(bits, ratios)
    if target_ms is not None and predicted["predicted_latency_ms"] > target_ms:
        notes.append(f"the target {target_speedup:g}x is not reached within the budget: predicted "
                     f"{predicted['predicted_speedup']:.2f}x")
    config = allocation_config(profile, bits, ratios, finetune_steps=finetune_steps, execution=execution)
    rows = allocation_rows(profile, bits, ratios)
    return Allocation(config, rows, predicted, objective,
                      {"max_accuracy_drop_points": max_accuracy_drop_points, "max_loss_increase": max_loss_increase,
                       "target_speedup": target_speedup,
                       "bits_options": options, "allow_pruning": allow_pruning}, notes)


def allocation_rows(profile, bits: dict, ratios: dict) -> list[dict]:
    """The explanation table: one row per layer (bits) and per pruned group (ratio), with predicted drops."""
    profile = _as_profile(profile)
    model = _Model(profile)
    rows = []
    for name, b in bits.items():
        r = model.quant_drop[name].get(b)
        rows.append({"kind": "layer", "name": name, "bits": int(b), "prune_ratio": None,
                     "predicted_drop_points": max(r["drop_points"], 0.0) if r else 0.0,
                     "params": model.layers[name]["params"]})
    for name, ratio in ratios.items():
        r = model.prune_drop[name].get(ratio)
        rows.append({"kind": "group", "name": name, "bits": None, "prune_ratio": float(ratio),
                     "predicted_drop_points": max(r["drop_points"], 0.0) if r else 0.0,
                     "members": ", ".join(model.groups[name]["members"])})
    return rows


def allocation_config(profile, bits: dict, ratios: dict, finetune_steps: int = 0,
                      execution: str = "dense") -> CompressionConfig:
    """A CompressionConfig whose overrides give each layer ``bits`` and each group ``ratios``.

    The most common bit width becomes the config's own, so only the exceptions are listed.
    """
    profile = _as_profile(profile)
    params = profile.params
    counts: dict[int, int] = {}
    for b in bits.values():
        counts[b] = counts.get(b, 0) + 1
    base = max(counts, key=lambda b: (counts[b], -b)) if counts else 32
    overrides = [{"pattern": name, "bits": int(b)} for name, b in bits.items() if b != base]
    pruned = {name: r for name, r in ratios.items() if r > 0}
    overrides += [{"pattern": name, "prune_ratio": float(r)} for name, r in pruned.items()]
    return CompressionConfig(prune_method=params.get("prune_method", "l2-structured") if pruned else "none",
                             finetune_steps=finetune_steps, bits=int(base),
                             granularity=params.get("granularity", "per-channel"), execution=execution,
                             layer_overrides=overrides)


def rows_to_choice(profile, rows: list[dict]) -> tuple[dict, dict]:
    """(bits per layer, ratio per group) from an edited explanation table, checked against the profile."""
    profile = _as_profile(profile)
    model = _Model(profile)
    bits, ratios = {}, {}
    for row in rows:
        name = row.get("name")
        if row.get("kind") == "layer":
            if name not in model.layers:
                raise ConfigError(f"layer {name!r} is not in the sensitivity profile")
            b = int(row.get("bits") or 32)
            if b != 32 and b not in model.quant_drop[name]:
                raise ConfigError(f"layer {name}: {b} bits was not profiled; choose 32 or one of "
                                  f"{', '.join(map(str, sorted(model.quant_drop[name], reverse=True)))}")
            bits[name] = b
        elif row.get("kind") == "group":
            if name not in model.groups:
                raise ConfigError(f"group {name!r} is not in the sensitivity profile")
            r = float(row.get("prune_ratio") or 0.0)
            if r and r not in model.prune_drop[name]:
                raise ConfigError(f"group {name}: ratio {r} was not profiled; choose 0 or one of "
                                  f"{', '.join(str(x) for x in sorted(model.prune_drop[name]))}")
            ratios[name] = r
    return bits, ratios


def predict(profile, bits: dict, ratios: dict) -> dict:
    """The predicted figures of a choice (e.g. an edited table); unlisted layers count as float, unlisted
    groups as unpruned."""
    model = _Model(_as_profile(profile))
    return model.predicted({n: bits.get(n, 32) for n in model.layers}, {n: r for n, r in ratios.items() if r})


def comparison_spec(config: CompressionConfig, *, prune_method: str, granularity: str, compare_ratios: tuple = (0.0,),
                    compare_bits: tuple = (32, 8, 4), batch_size: int = 32) -> SweepSpec:
    """The sweep that measures an allocation ``config`` next to uniform comparators, every point recovered
    like the allocation: the same fine-tune steps (``config.finetune_steps``; same rate, seed and data, as
    every sweep recovery), quantized-only and unpruned comparators included (fine-tuned in float, then
    quantized, as the engine recovers pruned points), so the comparison is fair."""
    return SweepSpec(prune_methods=(prune_method,) if any(r > 0 for r in compare_ratios) else ("none",),
                     prune_ratios=tuple(compare_ratios), bits=tuple(compare_bits), granularities=(granularity,),
                     finetune_steps=(config.finetune_steps,), batch_size=int(batch_size), allocations=(config,),
                     recover_unpruned=config.finetune_steps > 0)


def measure_allocation(scenario, baseline, allocation: Allocation, *, prune_method: str, granularity: str,
                       compare_ratios: tuple = (0.0,), compare_bits: tuple = (32, 8, 4), finetune_steps: int = 0,
                       batch_size: int = 32, store=None, device=None, name: str | None = None) -> list[dict]:
    """Measure ``allocation`` next to uniform comparators (``compare_ratios`` x ``compare_bits``) in one
    sweep, stored like any sweep; the records without tracebacks. The fp32 reference is among them."""
    # One recovery budget for the allocation and every comparator (``finetune_steps`` when given).
    steps = int(finetune_steps or allocation.config.finetune_steps)
    config = dataclasses.replace(allocation.config, finetune_steps=steps)
    spec = comparison_spec(config, prune_method=prune_method, granularity=granularity,
                           compare_ratios=compare_ratios, compare_bits=compare_bits, batch_size=batch_size)
    records = run_sweep(scenario, spec, store=store, device=device,
                        name=name or f"{scenario.name} allocation vs uniform", baseline=baseline)
    return [{k: v for k, v in record.items() if k != "traceback"} for record in records]


def measured_rows(records: list[dict]) -> list[dict]:
    """One table row per measured point: accuracy, size, latency and the drop (points) from the fp32 reference."""
    # Points reused from another run come back without a status: they were stored because they were ok.
    reference = next((r for r in records if r.get("config") == REFERENCE.to_dict()
                      and r.get("status", "ok") == "ok"), None)
    rows = []
    for r in records:
        if r.get("status", "ok") != "ok":
            rows.append({"point": r["label"], "status": (r.get("error") or "failed")[:60]})
            continue
        row = {"point": ("ALLOCATION " if r["config"].get("layer_overrides") else "") + r["label"],
               "accuracy": r["accuracy"], "size_bytes": r["size_bytes"], "latency_ms_p50": r["latency_ms_p50"]}
        if reference:
            row["drop_points"] = round((reference["accuracy"] - r["accuracy"]) * 100, 3)
        rows.append(row)
    return rows
