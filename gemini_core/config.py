"""The compression configuration: one frozen dataclass, validated on construction.

``compress(model, config)`` (see ``compress.py``) applies it with one call, the way torchao's
``quantize_(model, config)`` does.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from .errors import ConfigError

PRUNE_METHODS = (
    "none",
    "l1-structured",
    "l2-structured",
    "taylor-structured",
    "random-structured",
    "magnitude-unstructured",
    "2:4",
)
STRUCTURED_METHODS = ("l1-structured", "l2-structured", "taylor-structured", "random-structured")
UNSTRUCTURED_METHODS = ("magnitude-unstructured", "2:4")
BITS = (32, 16, 8, 6, 4, 3, 2)
GRANULARITIES = ("per-tensor", "per-channel", "group-32", "group-64", "group-128")
EXECUTIONS = ("dense", "sparse")
RECOVERIES = ("finetune", "qat")
MAX_PRUNE_RATIO = 0.95


def group_size(granularity: str) -> int | None:
    """Group length for ``group-N`` granularity, else None."""
    return int(granularity.split("-")[1]) if granularity.startswith("group-") else None


@dataclass(frozen=True)
class CompressionConfig:
    """What to do to a model. Every field is checked in ``__post_init__``."""

    prune_method: str = "none"
    prune_ratio: float = 0.0
    finetune_steps: int = 0
    bits: int = 32
    granularity: str = "per-channel"
    execution: str = "dense"
    # Per-layer overrides arrive with the sensitivity work; kept in the recipe so exports carry them.
    layer_overrides: tuple = field(default_factory=tuple)
    # How the finetune_steps recover: plain fine-tuning, or quantization-aware ("qat": trained against
    # fake-quantized weights at this config's bits and granularity, see qat.py).
    recovery: str = "finetune"

    def __post_init__(self) -> None:
        if self.prune_method not in PRUNE_METHODS:
            raise ConfigError(
                f"unknown prune method {self.prune_method!r}; choose one of {', '.join(PRUNE_METHODS)}"
            )
        try:
            ratio = float(self.prune_ratio)
        except (TypeError, ValueError):
            raise ConfigError(f"prune ratio {self.prune_ratio!r} is not a number") from None
        if not 0.0 <= ratio <= MAX_PRUNE_RATIO:
            raise ConfigError(f"prune ratio {ratio} is outside [0, {MAX_PRUNE_RATIO}]")
        object.__setattr__(self, "prune_ratio", ratio)
        if self.prune_method == "2:4":
            # N:M fixes the ratio: half of every group of four weights.
            object.__setattr__(self, "prune_ratio", 0.5)
        elif self.prune_method == "none" and ratio != 0.0:
            raise ConfigError(f"prune ratio {ratio} given with prune method 'none'")
        if isinstance(self.bits, bool) or int(self.bits) != self.bits or int(self.bits) not in BITS:
            raise ConfigError(f"bits {self.bits!r} not supported; choose one of {', '.join(map(str, BITS))}")
        object.__setattr__(self, "bits", int(self.bits))
        if self.granularity not in GRANULARITIES:
            raise ConfigError(
                f"unknown granularity {self.granularity!r}; choose one of {', '.join(GRANULARITIES)}"
            )
        if self.execution not in EXECUTIONS:
            raise ConfigError(f"unknown execution {self.execution!r}; choose one of {', '.join(EXECUTIONS)}")
        if isinstance(self.finetune_steps, bool) or int(self.finetune_steps) != self.finetune_steps:
            raise ConfigError(f"fine-tune steps {self.finetune_steps!r} must be a whole number")
        if self.finetune_steps < 0:
            raise ConfigError(f"fine-tune steps {self.finetune_steps} must be 0 or more")
        object.__setattr__(self, "finetune_steps", int(self.finetune_steps))
        object.__setattr__(self, "layer_overrides", tuple(self.layer_overrides))
        if self.recovery not in RECOVERIES:
            raise ConfigError(f"unknown recovery {self.recovery!r}; choose one of {', '.join(RECOVERIES)}")
        if self.recovery == "qat" and (self.bits > 8 or self.finetune_steps == 0):
            # Without steps there is no recovery, and at 16/32 bits QAT is plain fine-tuning: one point, not two.
            object.__setattr__(self, "recovery", "finetune")

    @property
    def is_structured(self) -> bool:
        return self.prune_method in STRUCTURED_METHODS and self.prune_ratio > 0

    @property
    def is_unstructured(self) -> bool:
        return self.prune_method in UNSTRUCTURED_METHODS and self.prune_ratio > 0

    @property
    def is_qat(self) -> bool:
        """Quantization-aware recovery: the recovered model depends on bits and granularity too."""
        return self.recovery == "qat"

    @property
    def prune_key(self) -> tuple:
        """The part of the config that decides the pruned (and fine-tuned) model."""
        if self.is_qat:  # QAT recovers unpruned models too, and differently per bit width
            pruned = self.prune_method != "none" and self.prune_ratio > 0
            return ((self.prune_method, self.prune_ratio) if pruned else ("none", 0.0)) + (
                self.finetune_steps, "qat", self.bits, self.granularity)
        if self.prune_method == "none" or self.prune_ratio == 0:
            return ("none", 0.0, 0)
        return (self.prune_method, self.prune_ratio, self.finetune_steps)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["layer_overrides"] = list(self.layer_overrides)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "CompressionConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return cls(**{k: (tuple(v) if k == "layer_overrides" else v) for k, v in data.items()})

    def key(self) -> str:
        """A short stable id of this config (used to find stored points)."""
        data = self.to_dict()
        if data["recovery"] == "finetune":
            del data["recovery"]  # the default: keys of configs from before the field existed stay the same
        blob = json.dumps(data, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        parts = []
        if self.prune_key[0] != "none":
            parts.append(f"{self.prune_method} {self.prune_ratio:.0%}")
            if self.finetune_steps:
                parts.append(f"{'qat' if self.is_qat else 'ft'}{self.finetune_steps}")
        else:
            parts.append("unpruned")
            if self.is_qat:
                parts.append(f"qat{self.finetune_steps}")
        parts.append(f"{self.bits}-bit" + (f" {self.granularity}" if self.bits <= 8 else ""))
        parts.append(self.execution)
        return " / ".join(parts)


def parse_list(text: str, kind=str, name: str = "value") -> list:
    """Parse a comma list from the CLI or UI, naming the bad item on error."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise ConfigError(f"empty list for {name}")
    out = []
    for item in items:
        try:
            out.append(kind(item))
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not a valid {kind.__name__}") from None
    return out
