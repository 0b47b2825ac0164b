"""The unit of sweep work: one pruning setting and every point measured on its pruned model.

``run_unit`` needs only the model and the scenario, so any executor (this process, a Ray worker)
can run it; it yields one record per point, failed ones too.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from gemini_core.compress import compress, prune_copy
from gemini_core.config import CompressionConfig
from gemini_core.device import device_label, measurement_label, pick_device
from gemini_core.errors import Cancelled
from gemini_core.measure import count_macs, measure_point
from gemini_core.runtimes.auto import check_against_reference
from gemini_core.scenarios.base import Scenario
from gemini_core.training.loop import RECOVERY_RECIPE

AUTO_CHECK_ROUNDS = 7  # paired rounds of the after-unit check: a 98% interval from min to max


@dataclass(frozen=True)
class SweepUnit:
    """One pruning setting and every point measured on its pruned model."""

    prune_setting: CompressionConfig
    configs: tuple


def point_key(config: CompressionConfig, batch_size: int, device, recovery: str | None = None) -> str:
    """``device``: a torch device, or an executor's device key such as ``"ray:cpu"``. A fine-tuned point's
    key holds the recovery recipe too (the same config recovered another way is another model);
    ``recovery``: the scenario's (``training.loop.recovery_recipe``), by default the one-cycle recipe."""
    fields = {"config": config.key(), "batch": batch_size, "device": device_key(device)}
    if config.finetune_steps:
        fields["recovery_recipe"] = recovery or RECOVERY_RECIPE
    blob = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_unit(model: nn.Module, scenario: Scenario, unit: SweepUnit, batch_size: int, device=None,
             should_stop: Callable[[], bool] | None = None, skip: set[str] | frozenset = frozenset(),
             latency_kwargs: dict | None = None) -> Iterator[dict]:
    """Prune once, then measure each config of ``unit``; yields one record per point (failed ones too).

    ``skip``: config keys not to measure (already stored). Needs only the model and the scenario,
    so a remote worker can run it.
    """
    device = torch.device(device or pick_device())
    todo = [c for c in unit.configs if c.key() not in skip]
    if not todo:
        return
    started = time.perf_counter()
    try:
        pruned = prune_copy(model, unit.prune_setting, scenario, device=device, should_stop=should_stop)
        macs, _ = count_macs(pruned.model, scenario.example_inputs(1))
    except Cancelled:  # stopped while recovering: its points stay unmeasured, a re-run measures them
        return
    except Exception as exc:  # a failed pruning fails its points, not the sweep
        for config in todo:
            yield failed_record(config, batch_size, device, exc)
        return
    prune_seconds = time.perf_counter() - started
    # An auto point is checked once the unit is measured: timed again, paired, against torch dense at the same
    # storage; the dense model it is checked against is kept until then (or built for the check).
    auto_torch = {dataclasses.replace(c, execution="dense").key() for c in todo if c.execution == "auto"}
    kept_dense: dict[str, nn.Module] = {}
    pending_auto: list[tuple[dict, nn.Module, CompressionConfig]] = []
    for config in todo:
        if should_stop is not None and should_stop():
            return
        t0 = time.perf_counter()
        try:
            compressed = compress(model, config, scenario, device=device, pruned=pruned)
            record = measure_point(compressed, scenario, batch_size=batch_size, macs=macs,
                                   latency_kwargs=latency_kwargs, should_stop=should_stop)
        except Cancelled:  # stopped while measuring: this point stays unmeasured, a re-run measures it
            return
        except Exception as exc:
            yield failed_record(config, batch_size, device, exc)
            continue
        record.update({"status": "ok", "seconds": time.perf_counter() - t0, "prune_seconds": prune_seconds,
                       "finetune_loss": pruned.finetune_loss})
        if config.key() in auto_torch:
            kept_dense[config.key()] = compressed.model
        if config.execution == "auto":
            pending_auto.append((record, compressed.model, config))
            continue
        del compressed
        yield record
    for record, auto_model, config in pending_auto:
        if should_stop is not None and should_stop():
            return
        yield check_auto_point(record, auto_model, config, kept_dense, model, scenario, pruned, device, batch_size)


def check_auto_point(record: dict, auto_model: nn.Module, config: CompressionConfig, kept_dense: dict,
                     model: nn.Module, scenario: Scenario, pruned, device, batch_size: int) -> dict:
    """``record`` with ``auto_check``: the auto point timed again against torch dense at its storage, after the
    unit (the choice was made while the runtimes were built; the machine's load may have changed since)."""
    dense_key = dataclasses.replace(config, execution="dense").key()
    try:
        dense = kept_dense.get(dense_key)
        if dense is None:  # the sweep did not measure torch dense at this storage: built for the check only
            dense = compress(model, dataclasses.replace(config, execution="dense"), scenario, device=device,
                             pruned=pruned).model
        batch = {k: v.to(device) for k, v in scenario.splits.test.first(batch_size).inputs.items()}
        check = check_against_reference(auto_model.eval(), dense.eval(), batch, rounds=AUTO_CHECK_ROUNDS)
    except Exception as exc:  # the check is extra evidence: its failure is recorded, the point stands
        record["auto_check"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        return record
    record["auto_check"] = check
    if check["verdict"] == "slower than torch":
        low, high = check["speedup_interval"]
        record.setdefault("notes", []).append(
            f"auto's kept execution ran {check['speedup_vs_torch']:.2f}x torch dense at the same storage when timed "
            f"again after the sweep (interval {low:.2f}x to {high:.2f}x): torch is the faster choice here now")
    return record


# How CPU allocators word running out of memory (CUDA raises torch.OutOfMemoryError).
_OOM_WORDS = ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory")


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or any(w in str(exc).lower() for w in _OOM_WORDS)


def failed_record(config: CompressionConfig, batch_size: int, device, exc: Exception) -> dict:
    reason = f"{type(exc).__name__}: {exc}"
    if _is_out_of_memory(exc):
        reason = f"out of memory at batch size {batch_size}: {exc}"
    return {"config": config.to_dict(), "label": config.label(), "status": "failed", "error": reason[:2000],
            "batch_size": batch_size, "device": device_label(device), "traceback": traceback.format_exc()[-4000:]}


def device_key(device) -> str:
    if isinstance(device, str) and device.startswith("ray:"):
        return device
    return measurement_label(device)  # the device, and on CPU the torch thread count
