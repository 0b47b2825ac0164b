"""The unit of sweep work: one pruning setting and every point measured on its pruned model.

``run_unit`` needs only the model and the scenario, so any executor (this process, a Ray worker)
can run it; it yields one record per point, failed ones too.
"""
from __future__ import annotations

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
from gemini_core.scenarios.base import Scenario
from gemini_core.training.loop import RECOVERY_RECIPE


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
    for config in todo:
        if should_stop is not None and should_stop():
            return
        t0 = time.perf_counter()
        try:
            compressed = compress(model, config, scenario, device=device, pruned=pruned)
            record = measure_point(compressed, scenario, batch_size=batch_size, macs=macs,
                                   latency_kwargs=latency_kwargs, should_stop=should_stop)
            del compressed
        except Cancelled:  # stopped while measuring: this point stays unmeasured, a re-run measures it
            return
        except Exception as exc:
            yield failed_record(config, batch_size, device, exc)
            continue
        record.update({"status": "ok", "seconds": time.perf_counter() - t0, "prune_seconds": prune_seconds,
                       "finetune_loss": pruned.finetune_loss})
        yield record


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
