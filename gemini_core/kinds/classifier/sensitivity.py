"""A classifier's per-layer sensitivity (``workflows.sensitivity.run_analysis`` is the door every kind shares):
which layers can be compressed, and how much, measured one at a time.

- Pruning profile: for every coupled group torch-pruning's DependencyGraph finds (the layers that
  must shrink together), validation accuracy and loss after pruning only that group, at each
  ratio. The group is pruned through a per-layer override, i.e. the same code ``compress`` runs.
- Quantization profile: for every quantizable layer (Linear, Conv2d, Embedding), validation
  accuracy and loss after quantizing only that layer at each bit width, on the kernels that
  layer would really run (8-bit Linear layers through the int8 dynamic kernel, which also
  quantizes activations), plus its weight range and outlier figures.
- Latency profile: each layer's share of one forward pass, by module hooks (see
  ``measure.measure_layer_latency``), in fp32 and with the int8 kernels where they apply.

The validation split is used throughout (test stays held out for the reported accuracy).
Results are stored in the run store (``analyses`` table) keyed by baseline and parameters.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from typing import Annotated, Callable, Literal

import torch
from pydantic import AfterValidator, BeforeValidator, Field, StrictInt
from pydantic_core import PydanticCustomError
from torch import nn

from gemini_core.compress import compress
from gemini_core.config import BITS, MAX_PRUNE_RATIO, STRUCTURED_METHODS, CompressionConfig, Granularity
from gemini_core.device import device_label, pick_device
from gemini_core.measure import accuracy_and_loss, measure_layer_latency, weight_stats
from gemini_core.progress import ProgressFn, notify
from gemini_core.results.sensitivity import SensitivityProfile
from gemini_core.results.store import Store
from gemini_core.scenarios.base import Scenario
from gemini_core.settings import OneOf, Says, settings
from gemini_core.techniques.plan import layer_names
from gemini_core.techniques.prune import PruneResult, count_params, prunable_groups, prune

DEFAULT_RATIOS = (0.25, 0.5, 0.75)
DEFAULT_BITS = (8, 4, 2)
DEFAULT_MAX_EXAMPLES = 512


PROFILE_BITS = tuple(b for b in BITS if b != 32)
PHASES = ("pruning", "quantization", "latency")


def _as_int(value) -> int:
    """A bit width read with int(), as the profile always read them ("4" and 4.0 are 4)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PydanticCustomError("whole_number", "must be a whole number") from None


def _ascending(values: tuple) -> tuple:
    return tuple(sorted(dict.fromkeys(values)))


def _descending(values: tuple) -> tuple:
    return tuple(sorted(dict.fromkeys(values), reverse=True))


def _distinct(values: tuple) -> tuple:
    return tuple(dict.fromkeys(values))


Count = Annotated[StrictInt, Field(ge=1)]


@settings
class AnalysisParams:
    # ratios in (0, 0.95], kept sorted without repeats
    ratios: Annotated[tuple[Annotated[float, Field(gt=0, le=MAX_PRUNE_RATIO)], ...], Field(title="sensitivity ratio"),
                      AfterValidator(_ascending)] = DEFAULT_RATIOS
    # bit widths of the classifier's storage below 32, kept highest first without repeats
    bits: Annotated[tuple[Annotated[int, BeforeValidator(_as_int), OneOf(PROFILE_BITS)], ...],
                    Field(title="sensitivity bits"), AfterValidator(_descending)] = DEFAULT_BITS
    granularity: Granularity = "per-channel"
    prune_method: Annotated[str, OneOf(STRUCTURED_METHODS, says="the pruning profile uses structured pruning; "
                                                               "{value!r} is not one of {choices}")] = "l2-structured"
    max_examples: Count = DEFAULT_MAX_EXAMPLES  # validation examples each evaluation uses
    batch_size: Count = 32  # latency profile batch
    latency_repeats: Count = 15
    # the profiles to measure, in the order given
    phases: Annotated[tuple[Literal[PHASES], ...], Field(min_length=1, title="sensitivity phase"),
                      Says("no sensitivity phase chosen; use pruning, quantization, latency"),
                      AfterValidator(_distinct)] = PHASES

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "AnalysisParams":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})


def analysis_id_for(baseline_key: str, params: AnalysisParams, device) -> str:
    blob = json.dumps({"baseline": baseline_key, "params": params.to_dict(), "device": device_label(device)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _drop(base: dict, got: dict) -> dict:
    return {"accuracy": got["accuracy"], "loss": got["loss"],
            "drop_points": round((base["accuracy"] - got["accuracy"]) * 100, 4),
            "loss_increase": got["loss"] - base["loss"]}


def analyse(model: nn.Module, scenario: Scenario, baseline_key: str, params: AnalysisParams | None = None,
            device=None, progress: ProgressFn | None = None,
            should_stop: Callable[[], bool] | None = None,
            on_profile: Callable[[SensitivityProfile], None] | None = None) -> SensitivityProfile:
    """Measure the profiles of ``params.phases`` on ``model`` (left unchanged).

    ``progress(event)`` gets ``{"event": "step", "phase", "item", "done", "total"}`` after every
    evaluation; ``on_profile(profile)`` the growing profile itself (for live views and storing);
    ``should_stop()`` ends the analysis after the current evaluation (status ``cancelled``).
    """
    params = params or AnalysisParams()
    device = torch.device(device or pick_device())
    started = time.perf_counter()
    model = copy.deepcopy(model).cpu().eval()
    val = scenario.splits.val
    val = val.take(torch.arange(min(len(val), params.max_examples)))
    names = layer_names(model)
    groups = prunable_groups(model, scenario) if "pruning" in params.phases else []
    total = (len(groups) * len(params.ratios) * ("pruning" in params.phases)
             + len(names) * len(params.bits) * ("quantization" in params.phases)
             + ("latency" in params.phases))
    profile = SensitivityProfile(analysis_id_for(baseline_key, params, device), scenario.name, baseline_key,
                                 params.to_dict(), device_label(device), examples=len(val), total_steps=total)
    profile.baseline = accuracy_and_loss(model.to(device), val, device)
    model.cpu()
    publish = on_profile or (lambda p: None)
    publish(profile)

    def step(phase: str, item: str) -> bool:
        profile.done_steps += 1
        profile.seconds = time.perf_counter() - started
        notify(progress, "step", phase=phase, item=item, done=profile.done_steps, total=total)
        publish(profile)
        return bool(should_stop and should_stop())

    stopped = False
    if "pruning" in params.phases:
        params_total = count_params(model)
        for group in groups:
            entry = {"group": group.root, "root": group.root, "members": group.members, "out_layers": group.out_layers,
                     "in_layers": group.in_layers, "channels": group.channels, "heads": group.heads, "results": []}
            profile.pruning.append(entry)
            for ratio in params.ratios:
                config = CompressionConfig(prune_method=params.prune_method,
                                           layer_overrides=[{"pattern": group.root, "prune_ratio": ratio}])
                result = prune(copy.deepcopy(model), config, scenario, device=device)
                got = accuracy_and_loss(result.model.to(device), val, device)
                entry["results"].append({"ratio": ratio, **_drop(profile.baseline, got),
                                         "params_removed": result.params_before - result.params_after,
                                         "params_removed_share":
                                             (result.params_before - result.params_after) / params_total,
                                         "notes": result.notes})
                del result
                if step("pruning", f"{group.root} at {ratio:.0%}"):
                    stopped = True
                    break
            if stopped:
                break
    if "quantization" in params.phases and not stopped:
        unpruned = PruneResult(model, params_before=count_params(model), params_after=count_params(model))
        for name in names:
            module = model.get_submodule(name)
            entry = {"layer": name, "kind": type(module).__name__, "params": int(module.weight.numel()),
                     **weight_stats(module.weight), "results": []}
            profile.quantization.append(entry)
            for bits in params.bits:
                config = CompressionConfig(layer_overrides=[{"pattern": name, "bits": bits,
                                                             "granularity": params.granularity}])
                compressed = compress(model, config, scenario, device=device, pruned=unpruned)
                got = accuracy_and_loss(compressed.model, val, device)
                entry["results"].append({"bits": bits, **_drop(profile.baseline, got),
                                         "kernel": compressed.layer_backends.get(name, "")})
                del compressed
                if step("quantization", f"{name} at {bits} bits"):
                    stopped = True
                    break
            if stopped:
                break
    if "latency" in params.phases and not stopped:
        profile.latency = latency_profile(model, scenario, names, params, device)
        stopped = step("latency", "latency profile")
    profile.seconds = time.perf_counter() - started
    profile.status = "cancelled" if stopped and profile.done_steps < total else "complete"
    publish(profile)
    return profile


def latency_profile(model: nn.Module, scenario: Scenario, names: list[str], params: AnalysisParams, device) -> dict:
    """Per-layer ms and share in fp32, and per-layer ms with the int8 kernels (CPU, Linear layers)."""
    inputs = scenario.splits.val.first(params.batch_size).inputs
    fp32 = measure_layer_latency(model.to(device), inputs, device, names, repeats=params.latency_repeats)
    model.cpu()
    out = dict(fp32)
    if device.type == "cpu":
        unpruned = PruneResult(model, params_before=count_params(model), params_after=count_params(model))
        int8 = compress(model, CompressionConfig(bits=8, granularity=params.granularity), scenario, device=device,
                        pruned=unpruned)
        kernel_layers = [n for n in names if int8.layer_backends.get(n) == "int8-dynamic"]
        timed = measure_layer_latency(int8.model, inputs, device, kernel_layers, repeats=params.latency_repeats)
        by = {r["layer"]: r["ms_p50"] for r in timed["layers"]}
        for row in out["layers"]:
            if row["layer"] in by:
                row["int8_ms_p50"] = by[row["layer"]]
        out["int8_total_ms_p50"] = timed["total_ms_p50"]
    return out


def run_analysis(scenario: Scenario, baseline, params: AnalysisParams | None = None, store=None, device=None,
                 force: bool = False, progress: ProgressFn | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_profile: Callable[[SensitivityProfile], None] | None = None) -> SensitivityProfile:
    """``analyse`` with the run store: a complete stored analysis of the same baseline and parameters
    is returned as it is (unless ``force``); otherwise the profile is stored as it grows."""
    params = params or AnalysisParams()
    store = store or Store()
    device = torch.device(device or pick_device())
    analysis_id = analysis_id_for(baseline.key, params, device)
    if not force:
        found = store.get_analysis(analysis_id)
        if found is not None and found["status"] == "complete":
            profile = SensitivityProfile.from_dict(found["result"])
            if on_profile:
                on_profile(profile)
            return profile
    last_saved = [0.0]

    def keep(profile: SensitivityProfile) -> None:
        now = time.perf_counter()
        if profile.status != "running" or now - last_saved[0] > 2.0:  # store at most every 2 s while running
            store.save_analysis(profile.analysis_id, profile.baseline_key, profile.scenario, params.to_dict(),
                                profile.to_dict(), profile.status)
            last_saved[0] = now
        if on_profile:
            on_profile(profile)

    return analyse(baseline.model, scenario, baseline.key, params, device, progress, should_stop, keep)
