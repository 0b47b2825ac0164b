"""The compression configuration: one frozen settings dataclass (``gemini_core/settings.py``), checked on construction.

``compress(model, config)`` (see ``compress.py``) applies it with one call, the way torchao's
``quantize_(model, config)`` does.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import field
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StrictBool

from gemini_core.errors import ConfigError
from gemini_core.runtimes.registry import EXECUTIONS as _BACKENDS
from gemini_core.settings import OneOf, Whole, settings
from gemini_core.techniques.grid import QuantGrid, granularity_text
from gemini_core.techniques.methods import PRUNE_METHODS as _REGISTERED
from gemini_core.techniques.methods import methods_of_kind

PRUNE_METHODS = tuple(_REGISTERED)  # names, in registration order (the registry holds what they do)
STRUCTURED_METHODS = methods_of_kind("structured")
UNSTRUCTURED_METHODS = methods_of_kind("unstructured", "n:m")
BITS = (32, 16, 8, 6, 4, 3, 2)
# The classifier's granularities, in their stored spelling (any spelling QuantGrid parses is accepted and stored so).
GRANULARITIES = ("per-tensor", "per-channel", "group-32", "group-64", "group-128")
EXECUTIONS = tuple(_BACKENDS)  # declared in runtimes/registry.py
RECOVERIES = ("finetune", "qat", "distill")
MAX_PRUNE_RATIO = 0.95


def group_size(granularity: str) -> int | None:
    """Group length for ``group-N`` granularity, else None."""
    return QuantGrid.parse_granularity(granularity)[1]


def check_granularity(value, where: str = "", what: str = "granularity") -> str:
    """``value`` in any spelling QuantGrid reads ("group-64", "64", "g64", "per-channel", "none") as the stored
    spelling, or a ConfigError when it is not one of the classifier's GRANULARITIES."""
    try:
        text = granularity_text(*QuantGrid.parse_granularity(value))
    except ConfigError:
        text = None
    if text not in GRANULARITIES:
        raise ConfigError(f"{where}unknown {what} {value!r}; choose one of {', '.join(GRANULARITIES)}")
    return text


def storage_grid(bits: int, granularity: str) -> QuantGrid:
    """The grid the classifier's storage holds at ``bits``: 8 bits symmetric (zero-point 0, what int8 kernels
    take), fewer bits asymmetric (at 2-4 bits a symmetric grid wastes a level); 16 and 32 bits are floats."""
    return QuantGrid.parse(bits, granularity, symmetric=bits >= 8)


OVERRIDE_FIELDS = ("prune_ratio", "bits", "granularity", "skip")


def pattern_regex(pattern: str) -> re.Pattern:
    """A module-name glob as a regex: ``*`` stays within one dotted name part, ``**`` crosses parts,
    ``?`` is one character, ``[...]`` a character class. A pattern matches a whole name, or a tail
    of it after a dot (``encoder.layer.*.output.dense`` matches ``hf.bert.encoder.layer.3.output.dense``
    but not ``...layer.3.attention.output.dense``)."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append(r"[^.]*")
        elif ch == "?":
            out.append(r"[^.]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ConfigError(f"layer pattern {pattern!r}: '[' without a closing ']'")
            body = pattern[i + 1:end]
            out.append("[" + ("^" + re.escape(body[1:]) if body.startswith("!") else re.escape(body)) + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile(r"(?:^|.*\.)" + "".join(out) + "$")


def _pattern(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("the pattern must be a non-empty module name or glob")
    return value.strip()


def _layer_overrides(value) -> tuple:
    """LayerOverride entries from a list of overrides, dicts or (pattern, {...}) pairs."""
    if isinstance(value, (str, dict)):
        raise ConfigError("layer overrides must be a list of entries, each with a 'pattern'")
    try:
        items = tuple(value)
    except TypeError:
        raise ConfigError("layer overrides must be a list of entries, each with a 'pattern'") from None
    return tuple(LayerOverride.coerce(item) for item in items)


# bits the classifier stores: a whole number (8.0 is 8; True and "8" are refused) from BITS
Bits = Annotated[Whole, OneOf(BITS)]
PruneRatio = Annotated[float, Field(ge=0, le=MAX_PRUNE_RATIO, title="prune ratio")]  # float(): "0.5" is read too
# any spelling QuantGrid reads, kept in the stored one ("64" -> "group-64")
Granularity = Annotated[str, BeforeValidator(check_granularity)]


@settings(where="layer override {pattern!r}")
class LayerOverride:
    """Per-layer settings for the modules whose names match ``pattern``; None keeps the config's value.

    ``skip``: the layer is left exactly as it is (not pruned, not quantized). Later entries win.
    """

    pattern: Annotated[str, BeforeValidator(_pattern)]
    prune_ratio: PruneRatio | None = None
    bits: Bits | None = None
    granularity: Granularity | None = None
    skip: StrictBool = False

    def __post_init__(self) -> None:
        where = f"layer override {self.pattern!r}"
        pattern_regex(self.pattern)  # a malformed glob fails here, not at compress time
        if self.skip and (self.prune_ratio is not None or self.bits is not None or self.granularity is not None):
            raise ConfigError(f"{where}: skip leaves the layer untouched; "
                              "it cannot also set a ratio, bits or granularity")
        if not self.skip and self.prune_ratio is None and self.bits is None and self.granularity is None:
            raise ConfigError(f"{where} sets nothing: give prune_ratio, bits, granularity or skip")

    def to_dict(self) -> dict:
        data = {"pattern": self.pattern}
        fields = ("prune_ratio", "bits", "granularity")
        data.update({k: getattr(self, k) for k in fields if getattr(self, k) is not None})
        if self.skip:
            data["skip"] = True
        return data

    @classmethod
    def coerce(cls, item) -> "LayerOverride":
        """From a LayerOverride, a dict ``{"pattern": ..., "bits": ...}`` or a pair ``(pattern, {...})``."""
        if isinstance(item, LayerOverride):
            return item
        if isinstance(item, dict):
            data = dict(item)
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], dict):
            data = {"pattern": item[0], **item[1]}
        else:
            raise ConfigError(f"layer override {item!r} must be a mapping with a 'pattern' and settings")
        unknown = set(data) - {"pattern", *OVERRIDE_FIELDS}
        if unknown:
            raise ConfigError(f"layer override {data.get('pattern')!r}: unknown field(s) {', '.join(sorted(unknown))}; "
                              f"use {', '.join(OVERRIDE_FIELDS)}")
        if "pattern" not in data:
            raise ConfigError(f"layer override {item!r} has no 'pattern'")
        return cls(**data)

    def short(self) -> str:
        if self.skip:
            return f"{self.pattern}=skip"
        parts = []
        if self.prune_ratio is not None:
            parts.append(f"{self.prune_ratio:.0%}")
        if self.bits is not None:
            parts.append(f"{self.bits}b")
        if self.granularity is not None:
            parts.append(self.granularity)
        return f"{self.pattern}={'/'.join(parts)}"


@settings
class CompressionConfig:
    """What to do to a model. Types and bounds are the fields' annotations; the rules between fields (a ratio
    needs a method, N:M fixes its ratio, QAT trains at one bit width) are in ``__post_init__``."""

    prune_method: Annotated[str, OneOf(_REGISTERED), Field(title="prune method")] = "none"
    prune_ratio: PruneRatio = 0.0
    finetune_steps: Annotated[Whole, Field(ge=0, title="fine-tune steps")] = 0
    bits: Bits = 32
    granularity: Granularity = "per-channel"
    execution: Annotated[str, OneOf(_BACKENDS)] = "dense"
    # Per-layer settings (LayerOverride entries, addressed by module-name patterns; later ones win),
    # applied by the same compress() call and kept in the recipe so exports carry them.
    layer_overrides: Annotated[tuple, BeforeValidator(_layer_overrides)] = field(default_factory=tuple)
    # How the finetune_steps recover: plain fine-tuning, quantization-aware ("qat": trained against
    # fake-quantized weights at this config's bits and granularity, see qat.py), or knowledge
    # distillation ("distill": KL divergence to the uncompressed model's logits, same steps and rate).
    recovery: Literal[RECOVERIES] = "finetune"

    def __post_init__(self) -> None:
        fixed = _REGISTERED[self.prune_method].fixed_ratio
        if fixed is not None:  # N:M fixes the ratio (2:4: half of every group of four weights)
            object.__setattr__(self, "prune_ratio", fixed)
        elif self.prune_method == "none" and self.prune_ratio != 0.0:
            raise ConfigError(f"prune ratio {self.prune_ratio} given with prune method 'none'")
        overrides = self.layer_overrides
        for item in overrides:
            if item.prune_ratio is not None and self.prune_method == "none":
                raise ConfigError(f"layer override {item.pattern!r} sets a prune ratio but the prune method is 'none'; "
                                  "choose a method for the ratio to use")
            if item.prune_ratio is not None and fixed is not None:
                raise ConfigError(f"layer override {item.pattern!r}: {self.prune_method} fixes the ratio at "
                                  f"{fixed:.0%}; use skip to leave a layer dense")
        if self.recovery == "qat" and any(o.bits is not None or o.granularity is not None for o in overrides):
            raise ConfigError("quantization-aware recovery trains at one bit width; it cannot be combined with "
                              "per-layer bits or granularity")
        if self.recovery == "qat" and (self.bits > 8 or self.finetune_steps == 0):
            # Without steps there is no recovery, and at 16/32 bits QAT is plain fine-tuning: one point, not two.
            object.__setattr__(self, "recovery", "finetune")
        if self.recovery == "distill" and self.finetune_steps == 0:
            object.__setattr__(self, "recovery", "finetune")  # no steps, no recovery: the plain point

    @property
    def grid(self) -> QuantGrid:
        """The grid the weights are stored on (``storage_grid``)."""
        return storage_grid(self.bits, self.granularity)

    @property
    def prune_overrides(self) -> tuple:
        """The overrides that change the pruned model: per-layer ratios, and skips when anything is pruned."""
        if self.prune_method == "none":
            return ()
        return tuple(o for o in self.layer_overrides if o.prune_ratio is not None or o.skip)

    @property
    def prunes(self) -> bool:
        """Whether any layer gets pruned (the global ratio or a per-layer one above 0)."""
        if self.prune_method == "none":
            return False
        return self.prune_ratio > 0 or any((o.prune_ratio or 0) > 0 for o in self.layer_overrides)

    @property
    def quant_overrides(self) -> tuple:
        """The overrides that change bits or granularity (skip keeps a layer at full precision)."""
        return tuple(o for o in self.layer_overrides if o.bits is not None or o.granularity is not None or o.skip)

    @property
    def is_structured(self) -> bool:
        return _REGISTERED[self.prune_method].kind == "structured" and self.prunes

    @property
    def is_unstructured(self) -> bool:
        return _REGISTERED[self.prune_method].kind in ("unstructured", "n:m") and self.prunes

    @property
    def is_qat(self) -> bool:
        """Quantization-aware recovery: the recovered model depends on bits and granularity too."""
        return self.recovery == "qat"

    @property
    def prune_key(self) -> tuple:
        """The part of the config that decides the pruned (and fine-tuned) model."""
        if self.is_qat:  # QAT recovers unpruned models too, and differently per bit width
            layers = tuple(tuple(sorted(o.to_dict().items())) for o in self.prune_overrides) if self.prunes else ()
            return ((self.prune_method, self.prune_ratio) if self.prunes else ("none", 0.0)) + (
                self.finetune_steps, "qat", self.bits, self.granularity) + ((("layers", layers),) if layers else ())
        distill = ("distill",) if self.recovery == "distill" else ()
        if not self.prunes:
            # The control (unpruned, recovered with the same steps as the pruned points) is its own model.
            return ("none", 0.0, self.finetune_steps) + distill
        key = (self.prune_method, self.prune_ratio, self.finetune_steps) + distill
        layers = tuple(tuple(sorted(o.to_dict().items())) for o in self.prune_overrides)
        return key + (("layers", layers),) if layers else key

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        # Empty overrides stay [] so configs from before the overrides existed keep their keys.
        data["layer_overrides"] = [o.to_dict() for o in self.layer_overrides]
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
            if self.prune_overrides and self.prune_ratio == 0:
                parts[-1] = f"{self.prune_method} per-layer"
            if self.finetune_steps:
                parts.append(f"{'qat' if self.is_qat else 'kd' if self.recovery == 'distill' else 'ft'}"
                             f"{self.finetune_steps}")
        else:
            parts.append("unpruned")
            if self.finetune_steps and not self.is_qat:
                kind = "kd" if self.recovery == "distill" else "ft"
                parts[-1] = f"control: unpruned {kind}{self.finetune_steps}"
            if self.is_qat:
                parts.append(f"qat{self.finetune_steps}")
        parts.append(f"{self.bits}-bit" + (f" {self.granularity}" if self.bits <= 8 else ""))
        parts.append(self.execution)
        if self.layer_overrides:
            rules = ", ".join(o.short() for o in self.layer_overrides)
            count = len(self.layer_overrides)
            parts.append(f"per-layer: {rules}" if len(rules) <= 60 else f"per-layer ({count} rules)")
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
        except ConfigError as exc:  # a parser of the engine's own (QuantGrid's) says what is wrong
            raise ConfigError(f"{name}: {exc}") from None
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not a valid {kind.__name__}") from None
    return out
