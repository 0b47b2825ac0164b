"""A recommender's stored embedding tables: packed row-wise integer codes (two 4-bit or four 2-bit codes per
byte, a float16 scale and offset per row), the row modules that look them up (``FloatRows``, ``QuantRows``)
and ``Table``, one id-indexed table in any of its layouts (all rows, rare rows folded into one fallback row,
low rank, quotient-remainder). ``compress.py`` decides what a point does; this module is how a table is
stored, looked up and rebuilt from the tensors an export holds.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gemini_core.errors import CheckpointError

BITS = (32, 8, 4, 2)  # 32: float rows; else row-wise integer codes
HOT_BITS = 8  # mixed precision: the rows with the most interactions keep this many bits
LAYOUTS = ("rows", "pruned", "low-rank", "qr")


# -- packed row-wise codes ----------------------------------------------------------------------------------------
def bytes_per_row(dim: int, bits: int) -> int:
    return math.ceil(dim * bits / 8)


def quantize_rows(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(packed codes uint8 (n, bytes_per_row), scale float16 (n,), offset float16 (n,)) of float rows: each row
    min to max on 2**bits levels. Scale and offset are rounded to float16 first and the codes computed with
    the rounded values, so dequantizing the stored numbers is the model that was measured."""
    weight = weight.detach().float().cpu()
    levels = (1 << bits) - 1
    low, high = weight.min(dim=1).values, weight.max(dim=1).values
    offset = low.half()
    scale = ((high - offset.float()) / levels).half()
    # a constant row (or one whose range underflows float16) is its offset: scale 1 and codes 0
    scale = torch.where(scale.float() > 0, scale, torch.ones_like(scale))
    codes = torch.round((weight - offset.float()[:, None]) / scale.float()[:, None]).clamp_(0, levels)
    return pack_codes(codes.to(torch.uint8), bits), scale, offset


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """(n, dim) codes below 2**bits -> (n, bytes_per_row) bytes, the first code in the lowest bits."""
    if bits == 8:
        return codes.contiguous()
    per = 8 // bits
    n, dim = codes.shape
    padded = torch.zeros(n, bytes_per_row(dim, bits) * per, dtype=torch.uint8)
    padded[:, :dim] = codes
    shifts = torch.arange(per, dtype=torch.uint8) * bits
    grouped = padded.reshape(n, -1, per) << shifts
    return grouped.sum(dim=2, dtype=torch.uint8).contiguous()


def unpack_codes(packed: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """(k, bytes_per_row) bytes -> (k, dim) codes (uint8)."""
    if bits == 8:
        return packed
    per = 8 // bits
    shifts = torch.arange(per, dtype=torch.uint8) * bits
    codes = (packed.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)
    return codes.reshape(packed.shape[0], -1)[:, :dim]


def dequantize(packed: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    return unpack_codes(packed, bits, dim).float() * scale.float()[:, None] + offset.float()[:, None]


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """One bit per id (numpy's packbits order), stored as uint8."""
    return torch.from_numpy(np.packbits(mask.cpu().numpy().astype(bool)))


def unpack_mask(packed: torch.Tensor, n: int) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(packed.cpu().numpy())[:n].astype(bool))


# -- rows of a table ---------------------------------------------------------------------------------------
class FloatRows(nn.Module):
    """Rows kept as float32 (trainable: recovery trains them)."""

    bits = 32

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().float().clone(memory_format=torch.contiguous_format))

    @property
    def n(self) -> int:
        return int(self.weight.shape[0])

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(index, self.weight)

    def describe(self) -> dict:
        return {"n": self.n, "dim": self.dim, "bits": 32}


class QuantRows(nn.Module):
    """Rows stored as packed row-wise codes, each row with a float16 scale and offset; with a hot mask, the hot
    rows in an 8-bit block and the others in a block of fewer bits (a row's place in its block is its rank
    among the rows of that block, computed on load, never stored)."""

    def __init__(self, n: int, dim: int, bits: int, hot_bits: int | None = None, tensors: dict | None = None):
        super().__init__()
        self.n, self.dim, self.bits, self.hot_bits = int(n), int(dim), int(bits), hot_bits
        tensors = tensors or {}
        names = ("codes", "scale", "offset") if hot_bits is None else (
            "hot", "codes_hot", "scale_hot", "offset_hot", "codes_cold", "scale_cold", "offset_cold")
        for name in names:
            if name not in tensors:
                raise CheckpointError(f"a quantized table lacks its {name!r} tensor")
            self.register_buffer(name, tensors[name])
        if hot_bits is not None:
            hot = unpack_mask(self.hot, self.n)
            position = torch.zeros(self.n, dtype=torch.long)
            position[hot] = torch.arange(int(hot.sum()))
            position[~hot] = torch.arange(int((~hot).sum()))
            self.register_buffer("_is_hot", hot, persistent=False)
            self.register_buffer("_position", position, persistent=False)
        self._check()

    def _check(self) -> None:
        """Shapes that agree with n, dim and the bits (a damaged file is one line, not a wrong score)."""
        blocks = [("", self.n, self.bits)] if self.hot_bits is None else [
            ("_hot", int(self._is_hot.sum()), self.hot_bits), ("_cold", self.n - int(self._is_hot.sum()), self.bits)]
        for suffix, rows, bits in blocks:
            codes = getattr(self, "codes" + suffix)
            if codes.dtype != torch.uint8 or tuple(codes.shape) != (rows, bytes_per_row(self.dim, bits)):
                raise CheckpointError(f"codes{suffix} of shape {tuple(codes.shape)} ({codes.dtype}) do not hold "
                                      f"{rows} rows of {self.dim} {bits}-bit codes")
            for name in ("scale", "offset"):
                part = getattr(self, name + suffix)
                if part.dtype != torch.float16 or tuple(part.shape) != (rows,):
                    raise CheckpointError(f"{name}{suffix} must be {rows} float16 values")

    @classmethod
    def from_float(cls, weight: torch.Tensor, bits: int, hot: torch.Tensor | None = None) -> "QuantRows":
        weight = weight.detach().float().cpu()
        n, dim = weight.shape
        if hot is None:
            codes, scale, offset = quantize_rows(weight, bits)
            return cls(n, dim, bits, None, {"codes": codes, "scale": scale, "offset": offset})
        tensors = {"hot": pack_mask(hot)}
        for suffix, rows, b in (("_hot", hot, HOT_BITS), ("_cold", ~hot, bits)):
            codes, scale, offset = quantize_rows(weight[rows], b)
            tensors.update({"codes" + suffix: codes, "scale" + suffix: scale, "offset" + suffix: offset})
        return cls(n, dim, bits, HOT_BITS, tensors)

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        # index_select, not ``tensor[index]``: advanced indexing spreads a small gather over the thread pool,
        # and on a busy machine waking those threads costs milliseconds (measured: 15 ms vs 5 us for 1,000 rows
        # on 2 loaded cores), which would time the pool instead of the lookup
        index = index.reshape(-1)
        if self.hot_bits is None:
            return self._block(index, "", self.bits)
        out = torch.empty(index.shape[0], self.dim)
        hot = self._is_hot.index_select(0, index)
        where = self._position.index_select(0, index)
        for rows, suffix, bits in ((torch.nonzero(hot).squeeze(1), "_hot", self.hot_bits),
                                   (torch.nonzero(~hot).squeeze(1), "_cold", self.bits)):
            if rows.numel():
                out.index_copy_(0, rows, self._block(where.index_select(0, rows), suffix, bits))
        return out

    def _block(self, at: torch.Tensor, suffix: str, bits: int) -> torch.Tensor:
        return dequantize(getattr(self, "codes" + suffix).index_select(0, at),
                          getattr(self, "scale" + suffix).index_select(0, at),
                          getattr(self, "offset" + suffix).index_select(0, at), bits, self.dim)

    def describe(self) -> dict:
        out = {"n": self.n, "dim": self.dim, "bits": self.bits}
        if self.hot_bits is not None:
            out.update({"hot_bits": self.hot_bits, "hot_rows": int(self._is_hot.sum())})
        return out


def rows_from_description(desc: dict, tensors: dict, prefix: str) -> nn.Module:
    """A rows module from its description and the stored tensors named ``prefix`` + part."""
    n, dim, bits = int(desc["n"]), int(desc["dim"]), int(desc["bits"])
    if bits == 32:
        return FloatRows(_tensor(tensors, prefix + "weight", (n, dim)))
    if bits not in BITS:
        raise CheckpointError(f"{prefix}: {bits}-bit rows are not a format this version reads")
    hot_bits = desc.get("hot_bits")
    names = ("codes", "scale", "offset") if hot_bits is None else (
        "hot", "codes_hot", "scale_hot", "offset_hot", "codes_cold", "scale_cold", "offset_cold")
    return QuantRows(n, dim, bits, None if hot_bits is None else int(hot_bits),
                     {name: _tensor(tensors, prefix + name) for name in names})


def _tensor(tensors: dict, name: str, shape: tuple | None = None) -> torch.Tensor:
    if name not in tensors:
        raise CheckpointError(f"the stored model lacks {name}")
    value = tensors[name]
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise CheckpointError(f"{name} has shape {tuple(value.shape)}, the layout says {tuple(shape)}")
    return value


# -- tables -------------------------------------------------------------------------------------------------
class Table(nn.Module):
    """An id-indexed table in one layout, looked up like ``nn.Embedding`` (ids in, float rows out):

    - ``rows``: one row per id;
    - ``pruned``: the kept ids' rows, then one fallback row; ``kept`` holds one bit per id;
    - ``low-rank``: rows of A (one per id) times ``factor`` (rank x dim, float32);
    - ``qr``: ``q`` row ``id // divisor`` times ``r`` row ``id % divisor``, elementwise.
    """

    def __init__(self, n_ids: int, layout: str, parts: dict[str, nn.Module], kept: torch.Tensor | None = None,
                 divisor: int = 0, factor: torch.Tensor | None = None):
        super().__init__()
        if layout not in LAYOUTS:
            raise CheckpointError(f"table layout {layout!r}: this version reads {', '.join(LAYOUTS)}")
        self.n_ids, self.layout, self.divisor = int(n_ids), layout, int(divisor)
        self.parts = nn.ModuleDict(parts)
        if layout == "pruned":
            kept = kept.bool().cpu()
            if kept.shape != (self.n_ids,):
                raise CheckpointError(f"the kept-row mask has {kept.shape[0]} bits for {self.n_ids} ids")
            fallback = int(kept.sum())
            if self.parts["rows"].n != fallback + 1:
                raise CheckpointError(f"a pruned table keeps {fallback} ids but stores {self.parts['rows'].n} "
                                      "rows (the kept rows and one fallback)")
            index = torch.full((self.n_ids,), fallback, dtype=torch.long)
            index[kept] = torch.arange(fallback)
            self.register_buffer("kept", pack_mask(kept))
            self.register_buffer("_index", index, persistent=False)
        if layout == "low-rank":
            self.factor = nn.Parameter(factor.detach().float().clone(memory_format=torch.contiguous_format))
            if self.parts["a"].n != self.n_ids or self.parts["a"].dim != self.factor.shape[0]:
                raise CheckpointError("a low-rank table's A and B do not fit together")
        if layout == "qr":
            if self.divisor < 2 or self.parts["q"].n != math.ceil(self.n_ids / self.divisor) \
                    or self.parts["r"].n != self.divisor or self.parts["q"].dim != self.parts["r"].dim:
                raise CheckpointError("a quotient-remainder table's Q and R do not fit its ids")
        if layout == "rows" and self.parts["rows"].n != self.n_ids:
            raise CheckpointError(f"a table of {self.n_ids} ids stores {self.parts['rows'].n} rows")

    @property
    def embedding_dim(self) -> int:
        if self.layout == "low-rank":
            return int(self.factor.shape[1])
        return next(iter(self.parts.values())).dim

    @property
    def num_embeddings(self) -> int:
        return self.n_ids

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        shape = ids.shape
        ids = ids.reshape(-1).cpu()
        if self.layout == "rows":
            out = self.parts["rows"].rows(ids)
        elif self.layout == "pruned":
            out = self.parts["rows"].rows(self._index.index_select(0, ids))
        elif self.layout == "low-rank":
            out = self.parts["a"].rows(ids) @ self.factor
        else:
            out = self.parts["q"].rows(torch.div(ids, self.divisor, rounding_mode="floor")) \
                * self.parts["r"].rows(ids % self.divisor)
        return out.reshape(*shape, out.shape[-1])

    @property
    def weight(self) -> torch.Tensor:
        """Every id's row (float32): what ``nn.Embedding.weight`` would hold."""
        return self.forward(torch.arange(self.n_ids))

    def describe(self) -> dict:
        out = {"layout": self.layout, "ids": self.n_ids, "dim": self.embedding_dim,
               "parts": {name: part.describe() for name, part in self.parts.items()}}
        if self.layout == "qr":
            out["divisor"] = self.divisor
        if self.layout == "low-rank":
            out["rank"] = int(self.factor.shape[0])
        if self.layout == "pruned":
            out["kept_ids"] = int(self._index.lt(self.parts["rows"].n - 1).sum())
        return out


def table_from_description(desc: dict, tensors: dict, prefix: str) -> Table:
    layout, n = desc.get("layout"), int(desc["ids"])
    parts = {name: rows_from_description(part, tensors, f"{prefix}parts.{name}.")
             for name, part in (desc.get("parts") or {}).items()}
    expected = {"rows": {"rows"}, "pruned": {"rows"}, "low-rank": {"a"}, "qr": {"q", "r"}}.get(layout)
    if expected is None or set(parts) != expected:
        raise CheckpointError(f"{prefix.rstrip('.')}: layout {layout!r} with parts {sorted(parts)}")
    kept = unpack_mask(_tensor(tensors, prefix + "kept"), n) if layout == "pruned" else None
    factor = _tensor(tensors, prefix + "factor") if layout == "low-rank" else None
    return Table(n, layout, parts, kept=kept, divisor=int(desc.get("divisor") or 0), factor=factor)
