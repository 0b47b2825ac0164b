"""What an adaptive training runs with: ``AdaptiveSettings`` (checked on construction) and its choices."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from gemini_core.config import MAX_PRUNE_RATIO, STRUCTURED_METHODS, check_granularity
from gemini_core.errors import ConfigError
from gemini_core.scenarios.base import TrainSettings
from gemini_core.training.schedules import LR_POLICIES, PRUNE_SCHEDULES, PruneSchedule

# The cache's meta.json format (part of the cache key). 2: training runs under ``training.loop.reproducible``
# at a fixed thread count; the key holds the thread count and the world size.
ADAPTIVE_FORMAT = 2
GUARD_ACTIONS = ("rollback", "slow")
MASK_MODES = ("none", "unstructured", "2:4")
QAT_BITS = (8, 6, 4, 3, 2)
PRUNE_METHODS = ("none",) + STRUCTURED_METHODS


@dataclass(frozen=True)
class AdaptiveSettings:
    """How an adaptive training runs; every field is checked on construction.

    ``lr``, ``batch_size``, ``weight_decay`` and ``threads`` (the CPU threads training runs on, fixed so
    the weights repeat) left None take the scenario's defaults;
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
    threads: int | None = None

    def __post_init__(self) -> None:
        self._check_counts()
        self._check_rates()
        self._check_pruning()
        self._check_guard_and_qat()
        self._check_epochs()

    def _whole(self, name: str, low: int = 0, allow_none: bool = False) -> None:
        value = getattr(self, name)
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{name.replace('_', ' ')} {value!r} must be a whole number")
        if value < low:
            raise ConfigError(f"{name.replace('_', ' ')} {value} must be at least {low}")
        object.__setattr__(self, name, int(value))

    def _check_counts(self) -> None:
        self._whole("epochs", 1)
        self._whole("patience", 0)
        self._whole("seed", 0)
        self._whole("start_epoch", 0)
        self._whole("end_epoch", 0, allow_none=True)
        self._whole("qat_start_epoch", 0, allow_none=True)
        self._whole("max_steps", 1, allow_none=True)
        self._whole("batch_size", 1, allow_none=True)
        self._whole("threads", 1, allow_none=True)

    def _check_rates(self) -> None:
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{name.replace('_', ' ')} {value!r} is not a number") from None
            if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                wanted = "positive" if name == "lr" else "0 or more"
                raise ConfigError(f"{name.replace('_', ' ')} {value} must be {wanted}")
            object.__setattr__(self, name, value)
        policy = str(self.lr_policy).replace("_", "-")
        if policy not in LR_POLICIES:
            raise ConfigError(f"unknown learning-rate policy {self.lr_policy!r}; "
                              f"choose one of {', '.join(LR_POLICIES)}")
        object.__setattr__(self, "lr_policy", policy)

    def _check_pruning(self) -> None:
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

    def _check_guard_and_qat(self) -> None:
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
        object.__setattr__(self, "qat_granularity", check_granularity(self.qat_granularity, what="QAT granularity"))

    def _check_epochs(self) -> None:
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
