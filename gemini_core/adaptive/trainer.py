"""One adaptive training, epoch by epoch: the pruning step, the epoch of training, validation with
the guard, the best checkpoint and early stopping (the algorithm is described in ``train.py``).
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gemini_core.adaptive.settings import AdaptiveSettings
from gemini_core.adaptive.steps import (
    compute_masks,
    count_macs_of,
    head_counts,
    layer_widths,
    step_changes_structure,
    structured_step,
)
from gemini_core.errors import Cancelled
from gemini_core.progress import ProgressFn, notify
from gemini_core.techniques.prune import count_params
from gemini_core.techniques.qat import attach_transforms, clone, detach_transforms, transform_of
from gemini_core.techniques.quantize import quantize_weights_
from gemini_core.training.baseline import Baseline
from gemini_core.training.distributed import all_reduce, dist_info, sync_buffers, wrap
from gemini_core.training.loop import predict
from gemini_core.training.schedules import make_lr_policy

EPS = 1e-9  # ratios closer than this are the same ratio


@dataclass
class _Run:
    """What a rollback restores: the model, its structure's ratio and history, and the mask state."""

    model: nn.Module
    ratio: float
    history: list
    masks_on: bool
    version: int

    def snapshot(self) -> _Run:
        return _Run(clone(self.model), self.ratio, list(self.history), self.masks_on, self.version)


@dataclass
class _Step:
    """This epoch's pruning step, as the guard needs it."""

    old_ratio: float
    changed: bool = False
    snapshot: _Run | None = None  # the run before the step (kept when the guard is on)


def _accuracy(model: nn.Module, split, device) -> float:
    """Accuracy on ``split``, sharded over ranks and summed (the same figure on every rank)."""
    rank, world = dist_info()
    part = split if world == 1 else split.take(torch.arange(rank, len(split), world))
    correct = float((predict(model, part, device=device) == part.labels).sum()) if len(part) else 0.0
    correct, total = all_reduce([correct, float(len(part))], device)
    if not total:
        return float("nan")
    # float32, as train.accuracy_of computes it: the same model gives the same figure either way
    return float(torch.tensor(correct, dtype=torch.float32) / torch.tensor(total, dtype=torch.float32))


def _accuracy_on(model: nn.Module, split, device) -> float:
    """Sharded accuracy of a CPU model: moved to the rank's device for the count, then back."""
    model.to(device)
    try:
        return _accuracy(model, split, device)
    finally:
        model.to("cpu")


def _has_qat(model: nn.Module) -> bool:
    return any((t := transform_of(m)) is not None and t.bits is not None for m in model.modules())


class Trainer:
    """One adaptive training: set up here, then ``run_epoch`` per epoch, then ``finish``."""

    def __init__(self, scenario, settings: AdaptiveSettings, model: nn.Module, init_history: list | None,
                 device: torch.device, progress: ProgressFn | None, should_stop: Callable[[], bool] | None):
        self.scenario, self.settings, self.device = scenario, settings, device
        self.progress, self.should_stop = progress, should_stop
        self.rank, self.world = dist_info()
        self.splits = scenario.splits
        model.to(device)
        self.widths0, self.heads0 = layer_widths(model), head_counts(model, scenario)
        self.params0 = count_params(model)
        self.macs0 = count_macs_of(model, scenario)
        batches = [len(b) for b in self.splits.train.batches(settings.batch_size)]
        steps_per_epoch = max(1, sum(1 for n in batches if n >= self.world))
        self.total_steps = steps_per_epoch * settings.epochs
        if settings.max_steps:
            self.total_steps = min(self.total_steps, settings.max_steps)
        self.policy = make_lr_policy(settings.lr_policy, settings.lr, self.total_steps)
        self.schedule = settings.prune_schedule()
        self.run = _Run(model, 0.0, list(init_history or []), False, 0)
        self.loss_fn = nn.CrossEntropyLoss()
        self.summary = {"rollbacks": 0, "slowed": 0, "prune_seconds": 0.0, "notes": []}
        self.history: list[dict] = []
        self._new_optimizer()
        self.macs_now, self.macs_version = self.macs0, 0
        self.best = None  # (val accuracy, model copy, version, epoch)
        self.prev_val = None
        self.delay, self.cap = 0, None
        self.bad_epochs, self.step, self.qat_on = 0, 0, False
        self.early = False
        self.started = time.perf_counter()

    def announce(self, key: str) -> None:
        s = self.settings
        notify(self.progress, "start", epochs=s.epochs, total_steps=self.total_steps, params=self.params0,
               macs=self.macs0,
               planned_ratios=self.schedule.ratios(s.epochs) if s.prunes else [0.0] * s.epochs,
               world_size=self.world, baseline_key=key)
        self.started = time.perf_counter()

    # -- the model's companions -----------------------------------------------------------------------
    def _new_optimizer(self) -> None:
        """A fresh optimizer (and DDP wrapper) for the current parameters."""
        self.optimizer = torch.optim.AdamW(self.run.model.parameters(), lr=self.policy.lr,
                                           weight_decay=self.settings.weight_decay)
        self.runner = wrap(self.run.model, self.device)

    def _qat_wanted(self, epoch: int) -> bool:
        return self.settings.qat_bits is not None and epoch >= self.settings.qat_start_epoch

    def _rebuild_transforms(self, epoch: int) -> None:
        """Bake what is attached, then attach the masks (recomputed) and fake quantization again."""
        s, model = self.settings, self.run.model
        detach_transforms(model)
        masks = compute_masks(model, self.scenario, s.mask, self.run.ratio) if self.run.masks_on else {}
        bits = s.qat_bits if self._qat_wanted(epoch) else None
        if masks or bits is not None:
            attach_transforms(model, bits, s.qat_granularity, masks)

    # -- 1. the pruning step ----------------------------------------------------------------------------
    def _prune_step(self, epoch: int) -> tuple[float, _Step]:
        """The schedule's step for ``epoch``, if it asks for one: (the planned ratio, the step)."""
        s, run = self.settings, self.run
        planned = self.schedule.ratio_at(epoch - self.delay) if s.prunes else 0.0
        target = min(planned, self.cap) if self.cap is not None else planned
        want_mask = s.mask == "2:4" and epoch >= s.start_epoch and not run.masks_on
        step = _Step(old_ratio=run.ratio)
        new_ratio = max(run.ratio, target)
        grows = new_ratio > run.ratio + EPS
        structural = (s.structured and grows
                      and step_changes_structure(run.model, self.scenario, new_ratio, self.widths0, self.heads0))
        mask_change = want_mask or (s.mask == "unstructured" and grows)
        if grows and not (structural or mask_change):
            # Nothing to remove at this ratio yet (channel counts round to multiples of round_to):
            # no step, so no guard, and the optimizer keeps its moments.
            run.ratio = new_ratio
        elif structural or mask_change:
            step.snapshot = self._take_step(epoch, new_ratio, structural)
            step.changed = True
        else:
            return planned, step
        notify(self.progress, "prune", epoch=epoch + 1, ratio=self.run.ratio, scheduled_ratio=planned,
               params=count_params(self.run.model), changed=step.changed)
        return planned, step

    def _take_step(self, epoch: int, new_ratio: float, structural: bool) -> _Run | None:
        """Prune (structure and/or masks) to ``new_ratio``; the run from before when the guard is on."""
        s, run = self.settings, self.run
        if self.prev_val is None and s.tolerance is not None:
            sync_buffers(run.model)
            self.prev_val = _accuracy(run.model, self.splits.val, self.device)
        sync_buffers(run.model)
        snapshot = run.snapshot() if s.tolerance is not None else None
        t0 = time.perf_counter()
        if structural:
            detach_transforms(run.model)
            step_history, notes = structured_step(run.model, self.scenario, s.prune_method, new_ratio,
                                                  self.widths0, self.heads0, seed=s.seed + epoch)
            run.history.extend(step_history)
            self.summary["notes"].extend(n for n in notes if n not in self.summary["notes"])
        run.masks_on = run.masks_on or s.mask == "2:4" or (s.mask == "unstructured" and new_ratio > 0)
        run.ratio = new_ratio
        self._rebuild_transforms(epoch)
        self.qat_on = self._qat_wanted(epoch)
        run.version += 1
        self.summary["prune_seconds"] += time.perf_counter() - t0
        self._new_optimizer()
        return snapshot

    def _start_qat(self, epoch: int) -> None:
        """Fake quantization from ``qat_start_epoch`` on (when no pruning step switched it on already)."""
        if self._qat_wanted(epoch) and not self.qat_on:
            self._rebuild_transforms(epoch)
            self.qat_on = True
            self.run.version += 1
            self._new_optimizer()

    # -- 2. one epoch of training -----------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> float:
        """One pass over this rank's share of the training data; the mean loss over all ranks."""
        s, world = self.settings, self.world
        self.runner.train()
        losses, stopped = [], False
        for batch in self.splits.train.batches(s.batch_size, shuffle=True, seed=s.seed + epoch):
            global_n = len(batch)
            if world > 1:
                if global_n < world:
                    continue  # every rank must take part in every step
                batch = batch.take(torch.arange(self.rank, global_n, world))
            losses.append(self._train_step(batch, global_n))
            notify(self.progress, "step", epoch=epoch + 1, step=self.step, total_steps=self.total_steps,
                   loss=losses[-1])
            if self.step >= self.total_steps:
                break
            if world == 1 and self.should_stop is not None and self.should_stop():
                stopped = True
                break
        if world > 1:
            flag = float(bool(self.rank == 0 and self.should_stop is not None and self.should_stop()))
            stopped = bool(all_reduce([flag], self.device, "max")[0])
        if stopped:
            raise Cancelled(f"adaptive training cancelled in epoch {epoch + 1}; nothing was cached")
        loss_sum, loss_count = all_reduce([sum(losses), float(len(losses))], self.device)
        return loss_sum / max(loss_count, 1)

    def _train_step(self, batch, global_n: int) -> float:
        """One optimizer step on ``batch`` (this rank's share of a global batch of ``global_n`` examples)."""
        inputs = {k: v.to(self.device) for k, v in batch.inputs.items()}
        self.policy.apply(self.optimizer)
        logits, labels = self.runner(**inputs), batch.labels.to(self.device)
        if self.world == 1:
            loss = self.loss_fn(logits, labels)
        else:  # DDP averages over ranks: sum / global_n * world makes that the global batch's mean,
            # also when the last batch does not split evenly
            loss = nn.functional.cross_entropy(logits, labels, reduction="sum") * (self.world / global_n)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.policy.step()
        self.step += 1
        return float(loss.detach())

    # -- 3. validation and the guard --------------------------------------------------------------------
    def _guard(self, epoch: int, val: float, step: _Step) -> tuple[float, bool, bool]:
        """Roll back (or slow) a step that cost more than ``tolerance``: (val accuracy, rolled back, slowed)."""
        s = self.settings
        if not (step.changed and step.snapshot is not None and self.prev_val is not None
                and val < self.prev_val - s.tolerance):
            if self.cap is not None and self.run.ratio >= self.cap - EPS:
                self.cap = None  # the slowed step held: the schedule goes on (pushed back by ``delay``)
            return val, False, False
        failed_ratio = self.run.ratio
        self.run = step.snapshot
        self.summary["rollbacks"] += 1
        slowed = False
        if s.guard == "slow" and s.mask != "2:4":
            self.cap = step.old_ratio + (failed_ratio - step.old_ratio) / 2
            self.delay += 1
            self.summary["slowed"] += 1
            slowed = True
        self.qat_on = _has_qat(self.run.model)
        self._new_optimizer()
        notify(self.progress, "rollback", epoch=epoch + 1, ratio=failed_ratio, restored_ratio=self.run.ratio,
               action="slow" if slowed else "rollback")
        return self.prev_val, True, slowed

    # -- 4. the epoch's record, the best checkpoint, early stopping -------------------------------------
    def _final(self) -> bool:
        """The structure is final: the target is reached and fake quantization, if asked for, is on."""
        s, run = self.settings, self.run
        reached = run.ratio >= s.target_ratio - EPS or not (s.structured or s.mask == "unstructured")
        return reached and (s.mask != "2:4" or run.masks_on) and (s.qat_bits is None or self.qat_on)

    def _keep_best(self, epoch: int, val: float) -> bool:
        """Keep the best checkpoint of the final structure; whether this epoch is it."""
        run = self.run
        if self.best is None or self.best[2] != run.version or val > self.best[0]:
            self.best = (val, clone(run.model), run.version, epoch + 1)
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False

    def _record(self, epoch: int, planned: float, train_loss: float, val: float, lr_change: dict,
                rolled_back: bool, slowed: bool) -> bool:
        """The epoch's record (history and an ``epoch`` event); True when training stops here."""
        s, run = self.settings, self.run
        if run.version != self.macs_version:
            self.macs_now, self.macs_version = count_macs_of(run.model, self.scenario), run.version
        final = self._final()
        improved = self._keep_best(epoch, val) if final else False
        params_now = count_params(run.model)
        fields = {
            "epoch": epoch + 1, "epochs": s.epochs, "step": self.step, "total_steps": self.total_steps,
            "train_loss": train_loss, "val_accuracy": val, "lr": self.policy.lr, "params": params_now,
            "macs": self.macs_now, "params_removed_ratio": 1 - params_now / self.params0,
            "macs_ratio": self.macs_now / max(self.macs0, 1), "prune_ratio_now": run.ratio,
            "scheduled_ratio": planned, "rolled_back": rolled_back, "slowed": slowed,
            "lr_change": next(iter(lr_change), None), "qat": bool(self.qat_on), "final_structure": bool(final),
            "best": improved, "seconds": time.perf_counter() - self.started,
        }
        self.history.append({"event": "epoch", **fields})
        notify(self.progress, "epoch", **fields)
        if final and s.patience and self.bad_epochs >= s.patience:
            self.early = True
            notify(self.progress, "early_stop", epoch=epoch + 1, best_epoch=self.best[3],
                   best_val_accuracy=self.best[0])
            return True
        return self.step >= self.total_steps

    def run_epoch(self, epoch: int) -> bool:
        """Prune, train, validate (with the guard), record; True when training stops after this epoch."""
        planned, step = self._prune_step(epoch)
        self._start_qat(epoch)
        train_loss = self._train_epoch(epoch)
        sync_buffers(self.run.model)
        val = _accuracy(self.run.model, self.splits.val, self.device)
        val, rolled_back, slowed = self._guard(epoch, val, step)
        lr_change = self.policy.end_epoch(val, structural_change=step.changed and not rolled_back)
        self.prev_val = val
        return self._record(epoch, planned, train_loss, val, lr_change, rolled_back, slowed)

    # -- the result ---------------------------------------------------------------------------------------
    def _test_accuracy(self, model: nn.Module) -> float:
        test = self.splits.test
        return _accuracy(model, test, "cpu") if self.world == 1 else _accuracy_on(model, test, self.device)

    def finish(self, key: str, folder, description: dict) -> Baseline:
        """The best checkpoint of the final structure (else the last model), measured, as a Baseline."""
        s, run, summary = self.settings, self.run, self.summary
        if self.best is not None and self.best[2] == run.version:
            model = self.best[1]
            summary["best_epoch"] = self.best[3]
        else:
            model = run.model
        masks_left = detach_transforms(model)
        model.to("cpu").eval()
        summary.update({"train_seconds": time.perf_counter() - self.started, "params_before": self.params0,
                        "params_after": count_params(model), "macs_before": self.macs0,
                        "macs_after": count_macs_of(model, self.scenario), "achieved_ratio": run.ratio,
                        "params_removed_ratio": 1 - count_params(model) / self.params0,
                        "early_stopped": self.early, "epochs_run": len(self.history), "world_size": self.world,
                        "masked_layers": sorted(masks_left)})
        test_acc = self._test_accuracy(model)
        if s.qat_bits is not None:
            quantized = copy.deepcopy(model)
            quantize_weights_(quantized, s.qat_bits, s.qat_granularity)
            summary["test_accuracy_quantized"] = self._test_accuracy(quantized)
        return Baseline(self.scenario, model, key, s.train_settings(), self.history, test_acc, False, folder,
                        adaptive=description, pruning_history=run.history, summary=summary)
