"""Adaptive training: a learning rate and a structure that adapt while the model trains.

``train_adaptive(scenario, AdaptiveSettings(...))`` trains (from scratch, or on from a baseline)
with, per epoch:

1. a pruning step when the schedule (``schedules.PruneSchedule``: cubic as in Zhu and Gupta, or
   linear) asks for a higher ratio: structured through torch-pruning (channels, neurons, heads
   physically removed, the ratio measured against the widths the training started with), and/or
   an unstructured magnitude or 2:4 mask kept applied while training;
2. one epoch of training (AdamW; the learning rate from ``schedules.make_lr_policy``);
3. validation. When the epoch's pruning step cost more than ``tolerance`` validation accuracy, the
   guard either rolls the step back (``guard="rollback"``: the model from before the step is
   restored; the schedule goes on) or slows it (``guard="slow"``: restored, and the next step goes
   only half as far, the rest of the schedule pushed back an epoch);
4. once the structure is final: the best validation checkpoint is kept, and training stops early
   after ``patience`` epochs without improvement.

With ``qat_bits`` the weights are fake-quantized (``qat.py``, straight-through estimator) from
``qat_start_epoch`` on, so the model learns the weights the quantizer will store.

The optimizer is re-created after every structural step (parameters change shape); the learning
rate policy keeps its state on its own shadow optimizer. Progress arrives through ``progress``
callbacks (``step``, ``prune``, ``epoch``, ``early_stop`` events), so the dashboard draws it live
and the CLI prints it; ``should_stop`` cancels (``TrainingCancelled``, nothing cached).

The result is a ``train.Baseline``: cached under ``baselines_dir()`` with a key over the scenario,
data, settings and starting point, with the pruning history in its ``meta.json`` so loading it
rebuilds the pruned architecture. Sweeps and exports take it like any other baseline.

Distributed: inside a ``torch.distributed`` process group (see ``distributed.py``) the same call
trains with DistributedDataParallel. Every global batch is split across ranks, so the gradient is
the single-process one; pruning steps happen identically on every rank (same weights, buffers
synchronised from rank 0, same decisions from all-reduced validation figures); rank 0 alone writes
the cache and reports progress.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from gemini_core.config import GRANULARITIES, MAX_PRUNE_RATIO, STRUCTURED_METHODS
from gemini_core.errors import ConfigError, GeminiError
from gemini_core.training.schedules import LR_POLICIES, PRUNE_SCHEDULES, PruneSchedule, make_lr_policy

ProgressFn = Callable[[dict], None]
ADAPTIVE_FORMAT = 1
GUARD_ACTIONS = ("rollback", "slow")
MASK_MODES = ("none", "unstructured", "2:4")
QAT_BITS = (8, 6, 4, 3, 2)
PRUNE_METHODS = ("none",) + STRUCTURED_METHODS


class TrainingCancelled(GeminiError):
    """``should_stop`` asked to stop: nothing was cached."""


@dataclass(frozen=True)
class AdaptiveSettings:
    """How an adaptive training runs; every field is checked on construction.

    ``lr``, ``batch_size`` and ``weight_decay`` left None take the scenario's defaults;
    ``end_epoch`` None leaves the last quarter of the epochs (at least one) for recovery.
    ``target_ratio`` drives the structured channel ratio (``prune_method``) and, with
    ``mask="unstructured"``, the share of weights masked to zero; ``mask="2:4"`` keeps two of every
    four weights from ``start_epoch`` on. ``tolerance`` None switches the guard off.
    """

    epochs: int = 12
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    lr_policy: str = "warmup-cosine"
    target_ratio: float = 0.0
    prune_method: str = "l2-structured"
    schedule: str = "cubic"
    start_epoch: int = 0
    end_epoch: int | None = None
    tolerance: float | None = None
    guard: str = "rollback"
    patience: int = 0
    mask: str = "none"
    qat_bits: int | None = None
    qat_granularity: str = "per-channel"
    qat_start_epoch: int | None = None
    max_steps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        def whole(name, low=0, allow_none=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise ConfigError(f"{name.replace('_', ' ')} {value!r} must be a whole number")
            if value < low:
                raise ConfigError(f"{name.replace('_', ' ')} {value} must be at least {low}")
            object.__setattr__(self, name, int(value))

        whole("epochs", 1)
        whole("patience", 0)
        whole("seed", 0)
        whole("start_epoch", 0)
        whole("end_epoch", 0, allow_none=True)
        whole("qat_start_epoch", 0, allow_none=True)
        whole("max_steps", 1, allow_none=True)
        whole("batch_size", 1, allow_none=True)
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{name.replace('_', ' ')} {value!r} is not a number") from None
            if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise ConfigError(f"{name.replace('_', ' ')} {value} must be {'positive' if name == 'lr' else '0 or more'}")
            object.__setattr__(self, name, value)
        policy = str(self.lr_policy).replace("_", "-")
        if policy not in LR_POLICIES:
            raise ConfigError(f"unknown learning-rate policy {self.lr_policy!r}; choose one of {', '.join(LR_POLICIES)}")
        object.__setattr__(self, "lr_policy", policy)
        try:
            ratio = float(self.target_ratio)
        except (TypeError, ValueError):
            raise ConfigError(f"target ratio {self.target_ratio!r} is not a number") from None
        if not 0.0 <= ratio <= MAX_PRUNE_RATIO:
            raise ConfigError(f"target ratio {ratio} is outside [0, {MAX_PRUNE_RATIO}]")
        object.__setattr__(self, "target_ratio", ratio)
        if self.prune_method not in PRUNE_METHODS:
            raise ConfigError(f"adaptive pruning is structured: choose --prune-method from {', '.join(PRUNE_METHODS)} "
                              f"(unstructured and 2:4 are --mask modes), not {self.prune_method!r}")
        if ratio > 0 and self.prune_method == "none" and self.mask != "unstructured":
            raise ConfigError(f"target ratio {ratio} given with nothing to prune: choose a structured --prune-method "
                              "or --mask unstructured")
        if self.schedule not in PRUNE_SCHEDULES:
            raise ConfigError(f"unknown pruning schedule {self.schedule!r}; choose one of {', '.join(PRUNE_SCHEDULES)}")
        if self.guard not in GUARD_ACTIONS:
            raise ConfigError(f"unknown guard action {self.guard!r}; choose one of {', '.join(GUARD_ACTIONS)}")
        if self.mask not in MASK_MODES:
            raise ConfigError(f"unknown mask mode {self.mask!r}; choose one of {', '.join(MASK_MODES)}")
        if self.tolerance is not None:
            try:
                tolerance = float(self.tolerance)
            except (TypeError, ValueError):
                raise ConfigError(f"tolerance {self.tolerance!r} is not a number") from None
            if not 0.0 <= tolerance <= 1.0:
                raise ConfigError(f"tolerance {tolerance} must be in [0, 1] (a share of validation accuracy)")
            object.__setattr__(self, "tolerance", tolerance)
        if self.qat_bits is not None:
            if isinstance(self.qat_bits, bool) or self.qat_bits not in QAT_BITS:
                raise ConfigError(f"QAT bits {self.qat_bits!r} not supported; choose one of "
                                  f"{', '.join(map(str, QAT_BITS))}")
            object.__setattr__(self, "qat_bits", int(self.qat_bits))
        if self.qat_granularity not in GRANULARITIES:
            raise ConfigError(f"unknown QAT granularity {self.qat_granularity!r}; choose one of "
                              f"{', '.join(GRANULARITIES)}")
        last = self.epochs - 1
        if self.start_epoch > last:
            raise ConfigError(f"start epoch {self.start_epoch} is past the last epoch ({last}; epochs count from 0)")
        if self.end_epoch is not None and not self.start_epoch <= self.end_epoch <= last:
            raise ConfigError(f"end epoch {self.end_epoch} must be between the start epoch {self.start_epoch} "
                              f"and the last epoch {last}")
        if self.qat_start_epoch is not None and self.qat_start_epoch > last:
            raise ConfigError(f"QAT start epoch {self.qat_start_epoch} is past the last epoch {last}")

    # -- derived ------------------------------------------------------------------------------
    @property
    def structured(self) -> bool:
        return self.prune_method != "none" and self.target_ratio > 0

    @property
    def prunes(self) -> bool:
        return self.structured or self.mask == "2:4" or (self.mask == "unstructured" and self.target_ratio > 0)

    def resolved(self, scenario) -> "AdaptiveSettings":
        """Scenario defaults and the schedule's end filled in (what the cache key is made of)."""
        train = scenario.default_train
        end = self.end_epoch
        if end is None:
            end = max(self.start_epoch, self.epochs - 1 - max(1, self.epochs // 4))
        return dataclasses.replace(
            self, lr=self.lr if self.lr is not None else train.lr,
            batch_size=self.batch_size if self.batch_size is not None else train.batch_size,
            weight_decay=self.weight_decay if self.weight_decay is not None else train.weight_decay, end_epoch=end,
            qat_start_epoch=(self.qat_start_epoch if self.qat_start_epoch is not None
                             else ((end if self.prunes else 0) if self.qat_bits else None)))

    def prune_schedule(self) -> PruneSchedule:
        end = self.end_epoch if self.end_epoch is not None else self.start_epoch
        return PruneSchedule(self.schedule, self.target_ratio, self.start_epoch, end)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AdaptiveSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def train_settings(self):
        """The equivalent ``TrainSettings`` (what a Baseline records as its training)."""
        from gemini_core.scenarios.base import TrainSettings

        return TrainSettings(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                             weight_decay=self.weight_decay, max_steps=self.max_steps, seed=self.seed)


# -- distributed helpers ------------------------------------------------------------------------------
def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce(values: list[float], device, op: str = "sum") -> list[float]:
    import torch.distributed as dist

    if dist_info()[1] == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return tensor.tolist()


def _sync_buffers(module: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) everywhere: each rank updated its own while training."""
    import torch.distributed as dist

    if dist_info()[1] == 1:
        return
    for buffer in module.buffers():
        if buffer is not None:
            dist.broadcast(buffer.data, 0)


def _wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module`` inside a process group (else ``module`` itself)."""
    if dist_info()[1] == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    shapes = sum(p.numel() for p in module.parameters())
    low, high = _all_reduce([shapes], device, "min")[0], _all_reduce([shapes], device, "max")[0]
    if low != high:
        raise RuntimeError(f"ranks disagree on the model after pruning ({int(low)} vs {int(high)} parameters)")
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


# -- structure ------------------------------------------------------------------------------------------
def _out_width(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def layer_widths(model: nn.Module) -> dict[str, int]:
    """Output width of every Linear / Conv2d by name (what ratios are measured against)."""
    return {name: _out_width(m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


def head_counts(model: nn.Module, scenario) -> dict[str, int]:
    spec = scenario.prune_spec(model)
    names = {id(m): n for n, m in model.named_modules()}
    return {names[id(m)]: int(h) for m, h in spec.num_heads.items()}


def _plan_step(model: nn.Module, scenario, ratio: float, widths0: dict[str, int], heads0: dict[str, int]):
    """Per-layer torch-pruning ratios (relative to the current widths) that reach ``ratio`` of ``widths0``."""
    from gemini_core.techniques.prune import pruner_kwargs

    spec = scenario.prune_spec(model)
    ignored = {id(m) for layer in spec.ignored_layers for m in layer.modules()}
    head_layers = {id(m) for m in spec.num_heads}
    notes: list[str] = []
    ratio_dict = {}
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)) or id(module) in ignored or id(module) in head_layers:
            continue
        original, current = widths0.get(name), _out_width(module)
        if not original:
            continue
        keep = int(original * (1 - ratio))
        if spec.round_to:
            rounded = keep - keep % spec.round_to
            if rounded > 0:
                keep = rounded
            elif keep > 0:
                notes.append(f"{name}: {keep} channels not rounded to a multiple of {spec.round_to}")
        keep = max(keep, 1)
        if keep < current:
            # +0.5: torch-pruning keeps int(current * (1 - r)) channels; this makes that exactly ``keep``.
            ratio_dict[module] = 1 - (keep + 0.5) / current
    kwargs = pruner_kwargs(spec, 0.0)
    kwargs["round_to"] = None  # rounded above, against the original widths
    names = {id(m): n for n, m in model.named_modules()}
    head_dict = {}
    for module, heads in spec.num_heads.items():
        original = heads0.get(names[id(module)], heads)
        target_removed = math.ceil(min(ratio, (original - 1) / original) * original) if original > 1 else 0
        remove = target_removed - (original - heads)
        if remove > 0:
            head_dict[module] = (remove - 0.5) / heads  # torch-pruning removes ceil(r * heads) heads
            # torch-pruning only visits a group with a positive width ratio; with prune_head_dims=False
            # the width ratio of q/k/v removes nothing itself, the head ratio decides.
            ratio_dict[module] = head_dict[module]
    if spec.num_heads:
        kwargs.update(head_pruning_ratio=0.0, head_pruning_ratio_dict=head_dict or None)
    return spec, ratio_dict, head_dict, kwargs, notes


def step_changes_structure(model: nn.Module, scenario, ratio: float, widths0: dict[str, int],
                           heads0: dict[str, int]) -> bool:
    """Whether pruning to ``ratio`` removes anything (rounding to ``round_to`` often makes a step a no-op)."""
    _, ratio_dict, head_dict, _, _ = _plan_step(model, scenario, ratio, widths0, heads0)
    return bool(ratio_dict or head_dict)


def structured_step(model: nn.Module, scenario, method: str, ratio: float, widths0: dict[str, int],
                    heads0: dict[str, int], seed: int = 0) -> tuple[list, list[str]]:
    """Prune ``model`` in place so every prunable layer keeps ``1 - ratio`` of its width in ``widths0``.

    One fresh torch-pruning ``MetaPruner`` per step with a per-layer ratio relative to the current
    width, so a step lands exactly where a one-shot pruning to ``ratio`` would (same rounding to
    ``round_to``, same head counts), whatever steps came before or were rolled back.
    Returns (torch-pruning's history of this step, notes).
    """
    import torch_pruning as tp

    from gemini_core.techniques.prune import _importance, _loss_backward

    spec, ratio_dict, head_dict, kwargs, notes = _plan_step(model, scenario, ratio, widths0, heads0)
    if not ratio_dict and not head_dict:
        return [], notes
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(model, example_inputs=_example(scenario, model), importance=_importance(method),
                                      pruning_ratio_dict=ratio_dict or None, **kwargs)
        if method == "taylor-structured":
            train = scenario.splits.train
            batch = train.first(min(256, len(train)))
            _loss_backward(model, type(batch)({k: v.to(_device_of(model)) for k, v in batch.inputs.items()},
                                              batch.labels.to(_device_of(model))))
        pruner.step()
    model.zero_grad(set_to_none=True)
    if spec.after_prune is not None:
        spec.after_prune(model)
    return [(str(n), bool(out), [int(i) for i in idx]) for n, out, idx in pruner.pruning_history()], notes


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _example(scenario, model: nn.Module, batch: int = 2) -> dict[str, torch.Tensor]:
    device = _device_of(model)
    return {k: v.to(device) for k, v in scenario.example_inputs(batch).items()}


def compute_masks(model: nn.Module, scenario, mode: str, ratio: float) -> dict[str, torch.Tensor]:
    """Unstructured (per-layer magnitude, share ``ratio`` zero) or 2:4 masks for the maskable layers."""
    from gemini_core.techniques.prune import nm_mask, prunable_layers

    masks = {}
    if mode == "none" or (mode == "unstructured" and ratio <= 0):
        return masks
    for name, module in prunable_layers(model, scenario.prune_spec(model)):
        weight = module.weight.detach()
        if mode == "2:4":
            try:
                masks[name] = nm_mask(weight).float()
            except ValueError:
                continue  # input size not a multiple of 4: the layer stays dense, as in prune.apply_masks
        else:
            k = int(round(ratio * weight.numel()))
            if k <= 0:
                continue
            threshold_index = weight.abs().reshape(-1).argsort()[:k]
            mask = torch.ones(weight.numel(), device=weight.device)
            mask[threshold_index] = 0.0
            masks[name] = mask.reshape(weight.shape)
    return masks


def count_macs_of(model: nn.Module, scenario) -> int:
    """MACs of one example (torch-pruning's counter, an estimate) of a plain copy of ``model``."""
    from gemini_core.measure import count_macs
    from gemini_core.techniques.qat import clone, detach_transforms, has_transforms

    plain = model
    if has_transforms(model):
        plain = clone(model)
        detach_transforms(plain)
    return count_macs(plain, _example(scenario, plain, 1))[0]


# -- the loop -------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """What a rollback restores: the model, its structure's ratio and history, and the mask state."""

    model: nn.Module
    ratio: float
    history: list
    masks_on: bool
    version: int

    def snapshot(self) -> "_Run":
        from gemini_core.techniques.qat import clone

        return _Run(clone(self.model), self.ratio, list(self.history), self.masks_on, self.version)


def _accuracy(model: nn.Module, split, device) -> float:
    """Accuracy on ``split``, sharded over ranks and summed (the same figure on every rank)."""
    from gemini_core.training.loop import predict

    rank, world = dist_info()
    part = split if world == 1 else split.take(torch.arange(rank, len(split), world))
    correct = float((predict(model, part, device=device) == part.labels).sum()) if len(part) else 0.0
    correct, total = _all_reduce([correct, float(len(part))], device)
    if not total:
        return float("nan")
    # float32, as train.accuracy_of computes it: the same model gives the same figure either way
    return float(torch.tensor(correct, dtype=torch.float32) / torch.tensor(total, dtype=torch.float32))


def adaptive_key(scenario, settings: AdaptiveSettings, init_key: str | None = None) -> str:
    blob = json.dumps({"format": ADAPTIVE_FORMAT, "kind": "adaptive", "arch": scenario.arch(),
                       "data": scenario.fingerprint(), "adaptive": settings.to_dict(), "init": init_key},
                      sort_keys=True)
    name = scenario.name.replace(":", "_").replace("/", "_")[:40]
    return f"{name}-adaptive-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def train_adaptive(scenario, settings: AdaptiveSettings | None = None, progress: ProgressFn | None = None,
                   should_stop: Callable[[], bool] | None = None, device=None, init=None,
                   init_history: list | None = None, retrain: bool = False, cache: bool = True):
    """Train ``scenario``'s model as ``settings`` say; returns a ``train.Baseline`` (cached unless ``cache=False``).

    ``init``: a ``Baseline`` to continue from (its key joins the cache key, its pruning history
    comes first in the result's), an ``nn.Module`` (not cached unless it is a Baseline), or None
    (``scenario.build_model()``). Raises ``TrainingCancelled`` when ``should_stop`` says so.
    """
    from gemini_core.device import pick_device
    from gemini_core.paths import baselines_dir
    from gemini_core.techniques.prune import count_params
    from gemini_core.techniques.qat import attach_transforms, clone, detach_transforms
    from gemini_core.training.loop import Baseline

    settings = (settings or AdaptiveSettings()).resolved(scenario)
    rank, world = dist_info()
    main = rank == 0
    say = progress if (progress is not None and main) else (lambda event: None)
    device = torch.device(device) if device is not None else pick_device()
    init_baseline = init if hasattr(init, "model") and hasattr(init, "key") else None
    init_key = init_baseline.key if init_baseline is not None else None
    if init_baseline is not None:
        init_history = list(init_baseline.pruning_history or [])
    cache = cache and (init is None or init_baseline is not None)
    key = adaptive_key(scenario, settings, init_key)
    folder = baselines_dir() / key
    description = {**settings.to_dict(), "key": key,
                   "init_baseline": init_baseline.describe() if init_baseline is not None else None}

    if cache and not retrain:
        found = _all_reduce([float(main and (folder / "meta.json").exists())], device, "max")[0]
        if found:
            if main:
                say({"event": "cached", "baseline_key": key})
                return load_adaptive_baseline(scenario, folder)
            return None

    splits = scenario.splits
    torch.manual_seed(settings.seed)
    if init is None:
        model = scenario.build_model()
    else:
        model = clone(init_baseline.model if init_baseline is not None else init)
    model.to(device)
    widths0, heads0 = layer_widths(model), head_counts(model, scenario)
    params0 = count_params(model)
    macs0 = count_macs_of(model, scenario)
    batch_size = settings.batch_size
    batches = [len(b) for b in splits.train.batches(batch_size)]
    steps_per_epoch = max(1, sum(1 for n in batches if n >= world))
    total_steps = steps_per_epoch * settings.epochs
    if settings.max_steps:
        total_steps = min(total_steps, settings.max_steps)
    policy = make_lr_policy(settings.lr_policy, settings.lr, total_steps)
    schedule = settings.prune_schedule()
    run = _Run(model, 0.0, list(init_history or []), False, 0)
    loss_fn = nn.CrossEntropyLoss()

    def optimizer_for(module):
        return torch.optim.AdamW(module.parameters(), lr=policy.lr, weight_decay=settings.weight_decay)

    def qat_wanted(epoch):
        return settings.qat_bits is not None and epoch >= settings.qat_start_epoch

    def rebuild_transforms(module, epoch, mask_ratio):
        """Bake what is attached, then attach the masks (recomputed) and fake quantization again."""
        detach_transforms(module)
        masks = compute_masks(module, scenario, settings.mask, mask_ratio) if run.masks_on else {}
        bits = settings.qat_bits if qat_wanted(epoch) else None
        if masks or bits is not None:
            attach_transforms(module, bits, settings.qat_granularity, masks)

    summary = {"rollbacks": 0, "slowed": 0, "prune_seconds": 0.0, "notes": []}
    history: list[dict] = []
    optimizer = optimizer_for(run.model)
    runner = _wrap(run.model, device)
    say({"event": "start", "epochs": settings.epochs, "total_steps": total_steps, "params": params0, "macs": macs0,
         "planned_ratios": schedule.ratios(settings.epochs) if settings.prunes else [0.0] * settings.epochs,
         "world_size": world, "baseline_key": key})
    macs_now, macs_version = macs0, 0
    best = None  # (val accuracy, model copy, version, epoch)
    prev_val = None
    delay, cap = 0, None
    bad_epochs, step, qat_on = 0, 0, False
    started = time.perf_counter()
    stopped = early = False
    for epoch in range(settings.epochs):
        # 1. pruning step --------------------------------------------------------------------
        planned = schedule.ratio_at(epoch - delay) if settings.prunes else 0.0
        target = min(planned, cap) if cap is not None else planned
        want_mask = settings.mask == "2:4" and epoch >= settings.start_epoch and not run.masks_on
        changed = False
        snapshot, old_ratio = None, run.ratio
        new_ratio = max(run.ratio, target)
        structural = (settings.structured and new_ratio > run.ratio + 1e-9
                      and step_changes_structure(run.model, scenario, new_ratio, widths0, heads0))
        mask_change = want_mask or (settings.mask == "unstructured" and new_ratio > run.ratio + 1e-9)
        if new_ratio > run.ratio + 1e-9 and not (structural or mask_change):
            # Nothing to remove at this ratio yet (channel counts round to multiples of round_to):
            # no step, so no guard, and the optimizer keeps its moments.
            run.ratio = new_ratio
            say({"event": "prune", "epoch": epoch + 1, "ratio": run.ratio, "scheduled_ratio": planned,
                 "params": count_params(run.model), "changed": False})
        elif structural or mask_change:
            if prev_val is None and settings.tolerance is not None:
                _sync_buffers(run.model)
                prev_val = _accuracy(run.model, splits.val, device)
            _sync_buffers(run.model)
            if settings.tolerance is not None:
                snapshot = run.snapshot()
            t0 = time.perf_counter()
            if structural:
                detach_transforms(run.model)
                step_history, notes = structured_step(run.model, scenario, settings.prune_method, new_ratio,
                                                      widths0, heads0, seed=settings.seed + epoch)
                run.history.extend(step_history)
                summary["notes"].extend(n for n in notes if n not in summary["notes"])
            run.masks_on = run.masks_on or settings.mask == "2:4" or (settings.mask == "unstructured" and new_ratio > 0)
            run.ratio = new_ratio
            rebuild_transforms(run.model, epoch, run.ratio)
            qat_on = qat_wanted(epoch)
            run.version += 1
            changed = True
            summary["prune_seconds"] += time.perf_counter() - t0
            optimizer = optimizer_for(run.model)
            runner = _wrap(run.model, device)
            say({"event": "prune", "epoch": epoch + 1, "ratio": run.ratio, "scheduled_ratio": planned,
                 "params": count_params(run.model), "changed": True})
        if qat_wanted(epoch) and not qat_on:
            rebuild_transforms(run.model, epoch, run.ratio)
            qat_on = True
            run.version += 1
            optimizer = optimizer_for(run.model)
            runner = _wrap(run.model, device)

        # 2. one epoch of training ------------------------------------------------------------
        runner.train()
        losses = []
        for batch in splits.train.batches(batch_size, shuffle=True, seed=settings.seed + epoch):
            if world > 1:
                if len(batch) < world:
                    continue  # every rank must take part in every step
                batch = batch.take(torch.arange(rank, len(batch), world))
            inputs = {k: v.to(device) for k, v in batch.inputs.items()}
            policy.apply(optimizer)
            loss = loss_fn(runner(**inputs), batch.labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            policy.step()
            step += 1
            losses.append(float(loss.detach()))
            say({"event": "step", "epoch": epoch + 1, "step": step, "total_steps": total_steps, "loss": losses[-1]})
            if step >= total_steps:
                break
            if world == 1 and should_stop is not None and should_stop():
                stopped = True
                break
        if world > 1:
            flag = float(bool(main and should_stop is not None and should_stop()))
            stopped = bool(_all_reduce([flag], device, "max")[0])
        if stopped:
            raise TrainingCancelled(f"adaptive training cancelled in epoch {epoch + 1}; nothing was cached")
        loss_sum, loss_count = _all_reduce([sum(losses), float(len(losses))], device)
        train_loss = loss_sum / max(loss_count, 1)

        # 3. validation, and the guard ---------------------------------------------------------
        _sync_buffers(run.model)
        val = _accuracy(run.model, splits.val, device)
        rolled_back = slowed = False
        if changed and snapshot is not None and prev_val is not None and val < prev_val - settings.tolerance:
            failed_ratio = run.ratio
            run = snapshot
            summary["rollbacks"] += 1
            if settings.guard == "slow" and settings.mask != "2:4":
                cap = old_ratio + (failed_ratio - old_ratio) / 2
                delay += 1
                summary["slowed"] += 1
                slowed = True
            rolled_back = True
            val = prev_val
            qat_on = _has_qat(run.model)
            optimizer = optimizer_for(run.model)
            runner = _wrap(run.model, device)
            say({"event": "rollback", "epoch": epoch + 1, "ratio": failed_ratio, "restored_ratio": run.ratio,
                 "action": "slow" if slowed else "rollback"})
        elif cap is not None and run.ratio >= cap - 1e-9:
            cap = None  # the slowed step held: the schedule goes on (pushed back by ``delay``)
        lr_change = policy.end_epoch(val, structural_change=changed and not rolled_back)
        prev_val = val

        # 4. best checkpoint and early stopping, once the structure is final ---------------------
        if run.version != macs_version:
            macs_now, macs_version = count_macs_of(run.model, scenario), run.version
        # Final: the target is reached (no step pending) and fake quantization, if asked for, is on.
        final = (run.ratio >= settings.target_ratio - 1e-9 or not (settings.structured or settings.mask == "unstructured")) \
            and (settings.mask != "2:4" or run.masks_on) and (settings.qat_bits is None or qat_on)
        improved = False
        if final:
            if best is None or best[2] != run.version or val > best[0]:
                best = (val, clone(run.model), run.version, epoch + 1)
                bad_epochs, improved = 0, True
            else:
                bad_epochs += 1
        params_now = count_params(run.model)
        record = {
            "event": "epoch", "epoch": epoch + 1, "epochs": settings.epochs, "step": step, "total_steps": total_steps,
            "train_loss": train_loss, "val_accuracy": val, "lr": policy.lr, "params": params_now,
            "macs": macs_now, "params_removed_ratio": 1 - params_now / params0, "macs_ratio": macs_now / max(macs0, 1),
            "prune_ratio_now": run.ratio, "scheduled_ratio": planned, "rolled_back": rolled_back, "slowed": slowed,
            "lr_change": next(iter(lr_change), None), "qat": bool(qat_on), "final_structure": bool(final),
            "best": improved, "seconds": time.perf_counter() - started,
        }
        history.append(record)
        say(record)
        if final and settings.patience and bad_epochs >= settings.patience:
            early = True
            say({"event": "early_stop", "epoch": epoch + 1, "best_epoch": best[3], "best_val_accuracy": best[0]})
            break
        if step >= total_steps:
            break

    # -- the result -------------------------------------------------------------------------------
    if best is not None and best[2] == run.version:
        model = best[1]
        summary["best_epoch"] = best[3]
    else:
        model = run.model
    masks_left = detach_transforms(model)
    model.to("cpu").eval()
    summary.update({"train_seconds": time.perf_counter() - started, "params_before": params0,
                    "params_after": count_params(model), "macs_before": macs0,
                    "macs_after": count_macs_of(model, scenario), "achieved_ratio": run.ratio,
                    "params_removed_ratio": 1 - count_params(model) / params0, "early_stopped": early,
                    "epochs_run": len(history), "world_size": world, "masked_layers": sorted(masks_left)})
    test_acc = _accuracy(model, splits.test, "cpu") if world == 1 else _accuracy_on(model, splits.test, device)
    if settings.qat_bits is not None:
        from gemini_core.techniques.quantize import quantize_weights_

        quantized = copy.deepcopy(model)
        quantize_weights_(quantized, settings.qat_bits, settings.qat_granularity)
        summary["test_accuracy_quantized"] = (_accuracy(quantized, splits.test, "cpu") if world == 1
                                              else _accuracy_on(quantized, splits.test, device))
    baseline = Baseline(scenario, model, key, settings.train_settings(), history, test_acc, False, folder,
                        adaptive=description, pruning_history=run.history, summary=summary)
    if cache and main:
        _write_cache(baseline, summary)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return baseline


def _has_qat(model: nn.Module) -> bool:
    from gemini_core.techniques.qat import transform_of

    return any((t := transform_of(m)) is not None and t.bits is not None for m in model.modules())


def _accuracy_on(model: nn.Module, split, device) -> float:
    """Sharded accuracy of a CPU model: moved to the rank's device for the count, then back."""
    model.to(device)
    try:
        return _accuracy(model, split, device)
    finally:
        model.to("cpu")


# -- cache ------------------------------------------------------------------------------------------------
def _write_cache(baseline, summary: dict) -> None:
    """Rank 0 only: weights and meta to a temporary folder, then renamed into place."""
    import shutil

    from safetensors.torch import save_file

    scenario = baseline.scenario
    folder = Path(baseline.path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    state = {k: v.detach().contiguous() for k, v in baseline.model.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"))
    (tmp / "meta.json").write_text(json.dumps({
        "key": baseline.key, "kind": "adaptive", "format": ADAPTIVE_FORMAT, "scenario": scenario.name,
        "arch": scenario.arch(), "adaptive": baseline.adaptive, "train_settings": baseline.settings.to_dict(),
        "history": baseline.history, "test_accuracy": baseline.test_accuracy, "data": scenario.describe(),
        "pruning_history": baseline.pruning_history, "summary": summary,
    }, indent=1, default=float))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def load_adaptive_baseline(scenario, folder) -> "object":
    """The cached adaptive baseline in ``folder``: the architecture rebuilt by replaying its pruning history."""
    from safetensors.torch import load_file

    from gemini_core.errors import CheckpointError
    from gemini_core.checkpoint.export import replay_pruning
    from gemini_core.training.loop import Baseline

    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    model = scenario.build_model()
    history = meta.get("pruning_history") or []
    if history:
        replay_pruning(model, history, scenario.example_inputs(2))
        spec = scenario.prune_spec(model)
        if spec.after_prune is not None:
            spec.after_prune(model)
    try:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
    except RuntimeError as exc:
        raise CheckpointError(f"the cached adaptive baseline {folder.name} does not fit its architecture: "
                              f"{str(exc).splitlines()[0]}") from None
    model.eval()
    settings = AdaptiveSettings.from_dict(meta["adaptive"])
    return Baseline(scenario, model, meta["key"], settings.train_settings(), meta["history"],
                    meta["test_accuracy"], True, folder, adaptive=meta["adaptive"], pruning_history=history,
                    summary=meta.get("summary") or {})


def baseline_from_adaptive_description(scenario, description: dict, progress: ProgressFn | None = None, device=None):
    """Load (or train again) the adaptive baseline a stored run was measured on."""
    from gemini_core.paths import baselines_dir
    from gemini_core.training.loop import baseline_from_description

    adaptive = description["adaptive"]
    folder = baselines_dir() / adaptive.get("key", description.get("baseline_key", ""))
    if (folder / "meta.json").exists():
        return load_adaptive_baseline(scenario, folder)
    init = adaptive.get("init_baseline")
    init_baseline = baseline_from_description(init, device=device) if init else None
    return train_adaptive(scenario, AdaptiveSettings.from_dict(adaptive), progress=progress, device=device,
                          init=init_baseline)


# -- figures ------------------------------------------------------------------------------------------------
@torch.no_grad()
def interleaved_latency(models: dict[str, nn.Module], inputs: dict[str, torch.Tensor], runs: int = 30,
                        warmup: int = 3) -> dict[str, float]:
    """Median ms of one CPU forward pass per model, the models taking turns pass by pass.

    On a shared machine a burst of other work slows whichever model runs during it; taking turns
    spreads such bursts over every model, so the ratios between them hold.
    """
    for model in models.values():
        model.cpu().eval()
        for _ in range(warmup):
            model(**inputs)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(runs):
        for name, model in models.items():
            t0 = time.perf_counter()
            model(**inputs)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def compare_gradual_vs_oneshot(scenario, target_ratio: float = 0.5, extra_epochs: int = 6,
                               method: str = "l2-structured", schedule: str = "cubic", lr: float | None = None,
                               lr_policy: str = "warmup-cosine", base_settings=None, seed: int = 0,
                               batch_size: int = 32, device="cpu", progress: ProgressFn | None = None,
                               end_epoch: int | None = None) -> dict:
    """Gradual pruning while training vs one-shot pruning of the trained model plus fine-tuning.

    Both start from the same trained dense baseline and train ``extra_epochs`` more epochs with the
    same learning-rate policy, rate and seed; the gradual run prunes on ``schedule`` during those
    epochs, the one-shot run prunes to ``target_ratio`` first and only fine-tunes. Returns test
    accuracy, latency (median of passes taken in turn, batch ``batch_size``), params, MACs, and wall and
    CPU (process) time of each: on a shared machine the CPU time is the steadier figure.
    """
    from gemini_core.compress import prune_copy
    from gemini_core.config import CompressionConfig
    from gemini_core.techniques.prune import count_params
    from gemini_core.training.loop import accuracy_of, get_baseline

    base = get_baseline(scenario, base_settings, device=device)
    lr = lr if lr is not None else scenario.default_train.lr * 0.3
    batch = scenario.splits.test.first(batch_size).inputs

    def figures(model, seconds):
        model = model.cpu().eval()
        return {"test_accuracy": accuracy_of(model, scenario.splits.test),
                "params": count_params(model), "macs": count_macs_of(model, scenario), "train_seconds": seconds}

    common = dict(epochs=extra_epochs, lr=lr, lr_policy=lr_policy, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    gradual = train_adaptive(scenario, AdaptiveSettings(target_ratio=target_ratio, prune_method=method,
                                                        schedule=schedule, end_epoch=end_epoch, **common),
                             init=base.model, device=device, cache=False, progress=progress)
    gradual_seconds, gradual_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    pruned = prune_copy(base.model, CompressionConfig(prune_method=method, prune_ratio=target_ratio), scenario)
    right_after = accuracy_of(pruned.model, scenario.splits.test)
    oneshot = train_adaptive(scenario, AdaptiveSettings(**common), init=pruned.model, device=device, cache=False,
                             progress=progress)
    oneshot_seconds, oneshot_cpu = time.perf_counter() - t0, time.process_time() - c0
    latency = interleaved_latency({"baseline": base.model, "gradual": gradual.model, "oneshot": oneshot.model},
                                  batch)
    out = {
        "scenario": scenario.name, "target_ratio": target_ratio, "method": method, "schedule": schedule,
        "extra_epochs": extra_epochs, "lr": lr, "lr_policy": lr_policy, "seed": seed,
        "planned_ratios": gradual.adaptive and AdaptiveSettings.from_dict(gradual.adaptive).prune_schedule().ratios(
            extra_epochs),
        "baseline": {**figures(base.model, (base.history[-1].get("seconds") if base.history else None)),
                     "key": base.key},
        "gradual": {**figures(gradual.model, gradual_seconds), "train_cpu_seconds": gradual_cpu,
                    "prune_seconds": gradual.summary["prune_seconds"], "history": gradual.history,
                    "achieved_ratio": gradual.summary["achieved_ratio"]},
        "oneshot": {**figures(oneshot.model, oneshot_seconds), "train_cpu_seconds": oneshot_cpu,
                    "accuracy_right_after_pruning": right_after,
                    "history": oneshot.history},
    }
    for name, value in latency.items():
        out[name]["latency_ms_p50"] = value
    out["latency_batch_size"] = batch_size
    return out
