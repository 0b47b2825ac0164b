"""What an adaptive training runs with: ``AdaptiveSettings`` (checked on construction) and its choices."""
from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from gemini_core.config import MAX_PRUNE_RATIO, STRUCTURED_METHODS, check_granularity
from gemini_core.errors import ConfigError
from gemini_core.scenarios.base import TrainSettings
from gemini_core.settings import OneOf, Says, Whole, settings
from gemini_core.training.schedules import LR_POLICIES, PRUNE_SCHEDULES, PruneSchedule

# The cache's meta.json format (part of the cache key). 2: training runs under ``training.loop.reproducible``
# at a fixed thread count; the key holds the thread count and the world size.
ADAPTIVE_FORMAT = 2
GUARD_ACTIONS = ("rollback", "slow")
MASK_MODES = ("none", "unstructured", "2:4")
QAT_BITS = (8, 6, 4, 3, 2)
PRUNE_METHODS = ("none",) + STRUCTURED_METHODS


def _policy_spelling(value) -> str:
    return str(value).replace("_", "-")  # "one_cycle" is "one-cycle"


def _qat_granularity(value) -> str:
    return check_granularity(value, what="QAT granularity")


Epoch = Annotated[Whole, Field(ge=0)]  # epochs count from 0
Positive = Annotated[Whole | None, Field(ge=1)]  # None: the scenario's default


@settings
class AdaptiveSettings:
    """How an adaptive training runs; every field is checked on construction.

    ``lr``, ``batch_size``, ``weight_decay`` and ``threads`` (the CPU threads training runs on, fixed so
    the weights repeat) left None take the scenario's defaults;
    ``end_epoch`` None leaves the last quarter of the epochs (at least one) for recovery.
    ``target_ratio`` drives the structured channel ratio (``prune_method``) and, with
    ``mask="unstructured"``, the share of weights masked to zero; ``mask="2:4"`` keeps two of every
    four weights from ``start_epoch`` on. ``tolerance`` None switches the guard off.
    """

    epochs: Annotated[Whole, Field(ge=1), Says("{name} {value} must be at least 1")] = 12
    lr: Annotated[float | None, Field(gt=0, allow_inf_nan=False)] = None
    batch_size: Positive = None
    weight_decay: Annotated[float | None, Field(ge=0, allow_inf_nan=False)] = None
    lr_policy: Annotated[Literal[LR_POLICIES], BeforeValidator(_policy_spelling),
                         Field(title="learning-rate policy")] = "warmup-cosine"
    target_ratio: Annotated[float, Field(ge=0, le=MAX_PRUNE_RATIO, title="target ratio")] = 0.0
    prune_method: Annotated[str, OneOf(PRUNE_METHODS, says="adaptive pruning is structured: choose --prune-method "
                                       "from {choices} (unstructured and 2:4 are --mask modes), not {value!r}")] = \
        "l2-structured"
    schedule: Annotated[Literal[PRUNE_SCHEDULES], Field(title="pruning schedule")] = "cubic"
    start_epoch: Epoch = 0
    end_epoch: Annotated[Whole | None, Field(ge=0)] = None
    tolerance: Annotated[float | None, Field(ge=0, le=1),
                         Says("{name} {value} must be in [0, 1] (a share of validation accuracy)")] = None
    guard: Annotated[Literal[GUARD_ACTIONS], Field(title="guard action")] = "rollback"
    patience: Annotated[Whole, Field(ge=0)] = 0
    mask: Annotated[Literal[MASK_MODES], Field(title="mask mode")] = "none"
    qat_bits: Annotated[Annotated[Whole, OneOf(QAT_BITS)] | None, Field(title="QAT bits")] = None
    qat_granularity: Annotated[str, BeforeValidator(_qat_granularity)] = "per-channel"
    qat_start_epoch: Annotated[Whole | None, Field(ge=0)] = None
    max_steps: Positive = None
    seed: Annotated[Whole, Field(ge=0)] = 0
    threads: Positive = None

    def __post_init__(self) -> None:
        if self.target_ratio > 0 and self.prune_method == "none" and self.mask != "unstructured":
            raise ConfigError(f"target ratio {self.target_ratio} given with nothing to prune: choose a structured "
                              "--prune-method or --mask unstructured")
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

    def resolved(self, scenario) -> AdaptiveSettings:
        """Scenario defaults and the schedule's end filled in (what the cache key is made of)."""
        train = scenario.default_train
        end = self.end_epoch
        if end is None:
            end = max(self.start_epoch, self.epochs - 1 - max(1, self.epochs // 4))
        return dataclasses.replace(
            self, lr=self.lr if self.lr is not None else train.lr,
            batch_size=self.batch_size if self.batch_size is not None else train.batch_size,
            weight_decay=self.weight_decay if self.weight_decay is not None else train.weight_decay, end_epoch=end,
            threads=self.threads if self.threads is not None else train.threads,
            qat_start_epoch=(self.qat_start_epoch if self.qat_start_epoch is not None
                             else ((end if self.prunes else 0) if self.qat_bits else None)))

    def prune_schedule(self) -> PruneSchedule:
        end = self.end_epoch if self.end_epoch is not None else self.start_epoch
        return PruneSchedule(self.schedule, self.target_ratio, self.start_epoch, end)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AdaptiveSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def train_settings(self) -> TrainSettings:
        """The equivalent ``TrainSettings`` (what a Baseline records as its training)."""
        return TrainSettings(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                             weight_decay=self.weight_decay, max_steps=self.max_steps, seed=self.seed,
                             threads=self.threads if self.threads is not None else TrainSettings.threads)
