"""The quantization grid: bits, how weights share a scale (per tensor, per output channel, or per group of
input columns) and whether the grid is symmetric. One object for every place that quantizes, stores or
re-reads integer weights: the classifier's storage and QAT, the LLM quantizers, and the GGUF, OpenVINO,
compressed-tensors, ONNX and safetensors writers; and one parser for every spelling a flag, a form, a
recipe or a stored config uses.

Torch-free, so ``config.py`` and the kind descriptions can use it.

Codes: a symmetric grid holds ``scale * code`` with ``code`` in ``qmin .. qmax`` = -2^(b-1) .. 2^(b-1)-1;
an asymmetric grid holds ``scale * (code - zero)`` with ``code`` and ``zero`` in 0 .. 2^b-1. How a
quantizer picks the scale on that grid is its own business (the classifier's int8 uses -127..127, the
LLM quantizers the compressed-tensors convention, see ``kinds/llm/quantize.py``).
"""
from __future__ import annotations

import numbers
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StrictBool

from gemini_core.errors import ConfigError
from gemini_core.settings import Whole, settings

KINDS = ("tensor", "channel", "group")
FLOAT_BITS = 32
MIN_BITS, MAX_INT_BITS = 2, 16
# Every spelling in use: "group-64" (stored configs, the classifier's --granularity), "64" (the LLM's
# --group-size), "g64" (LLM labels); "per-channel", "none" and "" (an LLM list's default) mean one scale per row.
_GROUP = re.compile(r"^(?:group-?|g)?(\d+)$")
_CHANNEL = ("per-channel", "channel", "none", "")
_TENSOR = ("per-tensor", "tensor")
_HINT = "use per-tensor, per-channel or a group size (group-64, g64 or 64)"


def _whole(value, what: str) -> int:
    """``value`` as an int, or a one-line ConfigError naming ``what`` (bools and fractions are refused)."""
    try:
        whole = not isinstance(value, bool) and isinstance(value, numbers.Real) and int(value) == value
    except (ValueError, OverflowError):  # nan, inf
        whole = False
    if not whole:
        raise ConfigError(f"{what} {value!r} must be a whole number")
    return int(value)


def _group_size(value) -> int:
    size = _whole(value, "group size")
    if size < 1:
        raise ConfigError(f"group size {size} must be a whole number of at least 1")
    return size


def granularity_text(granularity: str, group_size: int | None = None) -> str:
    """The stored spelling: "per-tensor", "per-channel" or "group-64"."""
    return f"group-{group_size}" if granularity == "group" else f"per-{granularity}"


def _grid_bits(bits: int) -> int:
    if not (MIN_BITS <= bits <= MAX_INT_BITS or bits == FLOAT_BITS):
        raise ConfigError(f"bits {bits} not supported by a quantization grid: use {MIN_BITS} to "
                          f"{MAX_INT_BITS}, or {FLOAT_BITS} for float weights")
    return bits


@settings
class QuantGrid:
    """``bits`` (2..16 for integer codes, 32 for float weights), ``granularity`` ("tensor", "channel" or
    "group"; a spelling such as "group-64" is parsed), ``group_size`` (input columns per scale, for
    "group" only) and ``symmetric`` (no zero point)."""

    bits: Annotated[Whole, AfterValidator(_grid_bits)]
    # Any spelling parse_granularity reads (text, a group size, None); __post_init__ stores the kind, since the
    # spelling and group_size are read together.
    granularity: Any = "channel"
    group_size: Annotated[Whole | None, Field(ge=1)] = None
    symmetric: StrictBool = True

    def __post_init__(self) -> None:
        granularity, size = self.granularity, self.group_size
        if granularity not in KINDS:  # a spelling ("group-64", "per-channel"): the one parser reads it
            granularity, parsed = QuantGrid.parse_granularity(granularity)
            if size is not None and parsed is not None and size != parsed:
                raise ConfigError(f"granularity {self.granularity!r} and group size {size!r} disagree")
            size = parsed if parsed is not None else size
        if granularity == "group" and size is None:
            raise ConfigError("a group grid needs a group size")
        if granularity != "group" and size is not None:
            raise ConfigError(f"a per-{granularity} grid has no group size (got {size!r})")
        object.__setattr__(self, "granularity", granularity)
        object.__setattr__(self, "group_size", size)

    # -- parsing -------------------------------------------------------------------------------------------
    @staticmethod
    def parse_granularity(value) -> tuple[str, int | None]:
        """(granularity, group size) of any spelling: "per-tensor", "per-channel", "group-64", "64", "g64",
        a number, or "none" / "" / None (per-channel). The one parser behind every flag, form and file."""
        if value is None:
            return "channel", None
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return "group", _group_size(value)
        if not isinstance(value, str):
            raise ConfigError(f"unknown granularity {value!r}; {_HINT}")
        text = value.strip().lower()
        if text in _CHANNEL:
            return "channel", None
        if text in _TENSOR:
            return "tensor", None
        match = _GROUP.match(text)
        if match is None:
            raise ConfigError(f"unknown granularity {value!r}; {_HINT}")
        return "group", _group_size(int(match.group(1)))

    @classmethod
    def parse(cls, bits, text=None, symmetric: bool = True) -> "QuantGrid":
        """The grid of ``bits`` at the granularity spelled ``text`` (see ``parse_granularity``)."""
        granularity, size = cls.parse_granularity(text)
        return cls(bits, granularity, size, symmetric)

    @classmethod
    def coerce(cls, bits, group=None, symmetric: bool | None = None) -> "QuantGrid | None":
        """A grid from what the writers' callers pass: a QuantGrid (as it is; ``symmetric`` given replaces its
        own), None (float weights: no grid), or bits with a group size / spelling (None: per-channel)."""
        if isinstance(bits, QuantGrid):
            if group is not None:
                raise TypeError("give a QuantGrid or bits with a group size, not both")
            return bits if symmetric is None or symmetric == bits.symmetric else \
                cls(bits.bits, bits.granularity, bits.group_size, symmetric)
        if bits is None:
            return None
        return cls.parse(bits, group, True if symmetric is None else symmetric)

    # -- reading -------------------------------------------------------------------------------------------
    @property
    def is_float(self) -> bool:
        return self.bits == FLOAT_BITS

    @property
    def granularity_text(self) -> str:
        """The stored spelling ("per-tensor", "per-channel", "group-64"), as configs and recipes hold it."""
        return granularity_text(self.granularity, self.group_size)

    def label(self, short: bool = False) -> str:
        """"4-bit group-64" (the classifier's labels) or, ``short``, "4-bit g64" (the LLM's); float: "32-bit"."""
        if self.is_float:
            return f"{self.bits}-bit"
        where = f"g{self.group_size}" if short and self.group_size else self.granularity_text
        return f"{self.bits}-bit {where}"

    @property
    def qmin(self) -> int:
        self._integer()
        return -(2 ** (self.bits - 1)) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        self._integer()
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2 ** self.bits - 1

    def _integer(self) -> None:
        if self.is_float:
            raise ConfigError(f"{self.bits}-bit weights are float: they have no integer codes")

    def check_columns(self, columns: int) -> "QuantGrid":
        """ConfigError when the group size does not divide ``columns`` (the LLM quantizers and the packed
        formats need whole groups; the classifier's storage pads instead). Returns the grid."""
        if self.group_size is not None and columns % self.group_size:
            raise ConfigError(f"group size {self.group_size} does not divide the {columns} input columns "
                              f"(for hidden size 576 use 32, 64, 96 or 192)")
        return self

    def group_dims(self, shape) -> tuple[int, int]:
        """(groups, group length) of a weight of ``shape`` (rows = the first dimension, columns = the rest); a
        row whose columns are not a whole number of groups is padded to one."""
        numel = 1
        for d in shape:
            numel *= int(d)
        if self.granularity == "tensor" or not len(shape):
            return 1, numel
        rows = int(shape[0])
        cols = numel // rows if rows else 0
        if self.group_size is None:
            return rows, cols
        return rows * -(-cols // self.group_size), self.group_size

    # -- storing -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"bits": self.bits, "granularity": self.granularity_text, "symmetric": self.symmetric}

    @classmethod
    def from_dict(cls, data: dict) -> "QuantGrid":
        """Inverse of ``to_dict``; also reads the LLM records' {"bits", "group_size", "symmetric"}."""
        if not isinstance(data, dict) or "bits" not in data:
            raise ConfigError(f"a quantization grid needs at least 'bits', not {data!r}")
        unknown = set(data) - {"bits", "granularity", "group_size", "symmetric"}
        if unknown:
            raise ConfigError(f"unknown quantization grid field(s): {', '.join(sorted(unknown))}")
        if "granularity" in data and data.get("group_size") is not None:
            return cls(data["bits"], data["granularity"], data["group_size"], data.get("symmetric", True))
        return cls.parse(data["bits"], data.get("granularity", data.get("group_size")), data.get("symmetric", True))
