"""Schedules: learning-rate policies and pruning-ratio schedules for adaptive training.

Learning rate. A policy drives torch's own schedulers (``LambdaLR``, ``OneCycleLR``,
``ReduceLROnPlateau``) on a *shadow* optimizer that holds one dummy parameter, and the trainer
copies the shadow's learning rate into the real optimizer before every step. The real optimizer
can then be re-created after every structural pruning step (its parameters change shape) without
losing the schedule's state.

- ``constant``: the base rate throughout;
- ``warmup-cosine``: linear warm-up over the first 5% of the steps, then cosine decay to 1% of the base;
- ``one-cycle``: ``torch.optim.lr_scheduler.OneCycleLR`` (what the plain baseline trainer uses);
- ``adaptive``: warm-up, then ``ReduceLROnPlateau`` on validation accuracy (halve after
  ``patience`` epochs without improvement), plus a back-off: when validation accuracy drops by more
  than ``drop`` against the previous epoch the rate is halved at once. Epochs that changed the
  model's structure (a pruning step) are expected to cost accuracy: they neither count as a plateau
  nor trigger the back-off, and they reset the plateau's reference.

Pruning ratio. ``ratio_at(epoch)`` is the ratio the model should have reached at the *start*
of an epoch; the trainer prunes in small steps, one per epoch, each followed by training.

- ``cubic`` (Zhu and Gupta, 2017, "To prune, or not to prune"):
  ``r_t = r_f + (r_0 - r_f) * (1 - (t - t0) / (n * dt)) ** 3`` for ``t0 <= t <= t0 + n * dt``:
  large steps early, while the network has redundancy to spare, and small ones near the end;
- ``linear``: equal steps.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field

from gemini_core.errors import ConfigError
from gemini_core.settings import Whole, settings

LR_POLICIES = ("constant", "warmup-cosine", "one-cycle", "adaptive")
PRUNE_SCHEDULES = ("cubic", "linear")
WARMUP_SHARE = 0.05
MIN_LR_SHARE = 0.01


# -- pruning ratio ----------------------------------------------------------------------------------
def cubic_ratio(t: float, final: float, t0: float, span: float, initial: float = 0.0) -> float:
    """Zhu and Gupta's schedule: ``r_f + (r_0 - r_f)(1 - (t - t0)/span)^3``, clamped to [t0, t0 + span]."""
    if span <= 0:
        return final if t >= t0 else initial
    progress = min(max((t - t0) / span, 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def linear_ratio(t: float, final: float, t0: float, span: float, initial: float = 0.0) -> float:
    if span <= 0:
        return final if t >= t0 else initial
    progress = min(max((t - t0) / span, 0.0), 1.0)
    return initial + (final - initial) * progress


@settings
class PruneSchedule:
    """Ratio to reach at the start of each epoch: ``initial`` until ``start``, ``final`` from ``end`` on."""

    kind: Annotated[Literal[PRUNE_SCHEDULES], Field(title="pruning schedule")] = "cubic"
    final: float = 0.5
    start: Whole = 0  # epochs count whole
    end: Whole = 4
    initial: float = 0.0

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ConfigError(f"pruning ends (epoch {self.end}) before it starts (epoch {self.start})")

    def ratio_at(self, epoch: float) -> float:
        fn = cubic_ratio if self.kind == "cubic" else linear_ratio
        return fn(epoch, self.final, self.start, self.end - self.start, self.initial)

    def ratios(self, epochs: int) -> list[float]:
        """The planned ratio at the start of each of ``epochs`` epochs."""
        return [self.ratio_at(e) for e in range(epochs)]


# -- learning rate ----------------------------------------------------------------------------------
class LRPolicy:
    """A learning-rate policy: call ``lr`` before each optimizer step, ``step`` after it, and
    ``end_epoch(val_accuracy, structural_change)`` after each validation."""

    name = "policy"

    def __init__(self, base_lr: float, total_steps: int):
        if not base_lr > 0 or not math.isfinite(base_lr):
            raise ConfigError(f"learning rate {base_lr!r} must be a positive number")
        self.base_lr = float(base_lr)
        self.total_steps = max(int(total_steps), 1)
        self._param = torch.nn.Parameter(torch.zeros(1))
        self.shadow = torch.optim.SGD([self._param], lr=self.base_lr)
        self.steps = 0

    @property
    def lr(self) -> float:
        return float(self.shadow.param_groups[0]["lr"])

    def step(self) -> None:
        self.steps += 1

    def end_epoch(self, val_accuracy: float, structural_change: bool = False) -> dict:
        """React to validation; returns what changed (e.g. ``{"backoff": True}``)."""
        return {}

    def apply(self, optimizer: torch.optim.Optimizer) -> float:
        lr = self.lr
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr


class _LambdaPolicy(LRPolicy):
    def __init__(self, base_lr: float, total_steps: int):
        super().__init__(base_lr, total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.shadow, self.factor)

    def factor(self, step: int) -> float:
        return 1.0

    def step(self) -> None:
        super().step()
        self.shadow.step()  # keeps torch from warning that the scheduler stepped before the optimizer
        self.scheduler.step()


class ConstantLR(_LambdaPolicy):
    name = "constant"


def warmup_cosine_factor(step: int, total_steps: int, warmup_share: float = WARMUP_SHARE,
                         min_share: float = MIN_LR_SHARE) -> float:
    """Linear warm-up over ``warmup_share`` of the steps, then cosine decay to ``min_share``."""
    warmup = max(1, int(round(total_steps * warmup_share)))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_share + (1 - min_share) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosineLR(_LambdaPolicy):
    name = "warmup-cosine"

    def factor(self, step: int) -> float:
        return warmup_cosine_factor(step, self.total_steps)


def one_cycle_warmup_share(total_steps: int) -> float:
    """OneCycleLR's pct_start: 10% of the steps, but at least 2 steps on short runs.

    OneCycleLR divides by (pct_start * total_steps - 1): exactly one warm-up step (e.g. 10 steps
    at 10%) is a ZeroDivisionError.
    """
    if total_steps >= 20:
        return 0.1
    return 2 / total_steps if total_steps > 2 else 0.25


class OneCycle(LRPolicy):
    name = "one-cycle"

    def __init__(self, base_lr: float, total_steps: int):
        super().__init__(base_lr, total_steps)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(self.shadow, max_lr=self.base_lr,
                                                             total_steps=self.total_steps + 1,
                                                             pct_start=one_cycle_warmup_share(self.total_steps + 1))

    def step(self) -> None:
        super().step()
        if self.steps < self.total_steps:  # OneCycleLR refuses to step past its total
            self.shadow.step()
            self.scheduler.step()


class AdaptiveLR(LRPolicy):
    """Warm-up, then reduce on plateau (torch's ``ReduceLROnPlateau``) and back off after a drop."""

    name = "adaptive"

    def __init__(self, base_lr: float, total_steps: int, patience: int = 1, factor: float = 0.5,
                 drop: float = 0.01, min_lr_share: float = MIN_LR_SHARE):
        super().__init__(base_lr, total_steps)
        self.factor = factor
        self.drop = drop
        self.min_lr = base_lr * min_lr_share
        self.warmup = max(1, int(round(self.total_steps * WARMUP_SHARE)))
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.shadow, mode="max", factor=factor, patience=patience, threshold=1e-3, threshold_mode="abs",
            min_lr=self.min_lr)
        self.previous: float | None = None
        self._set(self.base_lr / self.warmup)

    def _set(self, lr: float) -> None:
        for group in self.shadow.param_groups:
            group["lr"] = lr

    @property
    def lr(self) -> float:
        return float(self.shadow.param_groups[0]["lr"])

    def step(self) -> None:
        super().step()
        if self.steps < self.warmup:
            self._set(self.base_lr * (self.steps + 1) / self.warmup)
        elif self.steps == self.warmup:
            self._set(self.base_lr)

    def end_epoch(self, val_accuracy: float, structural_change: bool = False) -> dict:
        changes: dict = {}
        if structural_change:
            # A pruning step costs accuracy by design: start the plateau's reference afresh.
            self.plateau.best = self.plateau.mode_worse
            self.plateau.num_bad_epochs = 0
            self.previous = val_accuracy
            return changes
        before = self.lr
        if self.previous is not None and val_accuracy < self.previous - self.drop and self.steps >= self.warmup:
            self._set(max(before * self.factor, self.min_lr))
            changes["backoff"] = True
            # the drop already acted: do not count the same epoch as a plateau too
            self.plateau.num_bad_epochs = 0
        else:
            self.plateau.step(val_accuracy)
            if self.lr < before:
                changes["plateau"] = True
        self.previous = val_accuracy
        return changes


def make_lr_policy(name: str, base_lr: float, total_steps: int, **kwargs) -> LRPolicy:
    """``constant``, ``warmup-cosine``, ``one-cycle`` or ``adaptive`` (underscores accepted)."""
    key = str(name).replace("_", "-")
    classes = {"constant": ConstantLR, "warmup-cosine": WarmupCosineLR, "one-cycle": OneCycle,
               "adaptive": AdaptiveLR}
    if key not in classes:
        raise ConfigError(f"unknown learning-rate policy {name!r}; choose one of {', '.join(LR_POLICIES)}")
    return classes[key](base_lr, total_steps, **kwargs)
