"""Recovering the integer grid a quantized weight sits on: the codes and scales (and zero points) that
rebuild it exactly. The product stores quantized weights dequantized (``scale * code`` per group, or
``scale * (code - zero)`` on an asymmetric grid); a runtime or a packed file needs the integers back.
Re-quantizing would round a second time (NNCF derives its scales by another convention), so each
group's grid is recovered instead: scale = |extreme| / k for the k that makes every value an in-range
integer multiple. Used by the OpenVINO weights (``runtimes/ov_weights.py``), the compressed-tensors
export (``compressed_export.py``) and the GGUF q4 blocks (``gguf_export.py``), so they ship exactly the
weights that were measured.

Each recovery reads bits and groups from the point's ``QuantGrid`` (or from bits and a group size):
``grid_codes`` recovers the symmetric grid of those bits and groups, ``asym_grid_codes`` the asymmetric one,
whatever the grid's own flag (the OpenVINO and GGUF writers try both: a layer may sit on either);
``recover`` picks the one the flag names.
"""
from __future__ import annotations

import numpy as np

from gemini_core.errors import ConfigError
from gemini_core.techniques.grid import QuantGrid


def _grid(bits, group_size, symmetric: bool) -> QuantGrid:
    """``bits`` / ``group_size`` (or a QuantGrid) as the ``symmetric`` grid of the same bits and groups,
    whose group size must divide the columns."""
    grid = QuantGrid.coerce(bits, group_size, symmetric)
    if grid is None or grid.is_float or grid.granularity == "tensor":
        raise ConfigError(f"grid recovery needs integer codes per channel or per group, not {grid}")
    return grid


def recover(weight: np.ndarray, grid: QuantGrid):
    """``grid_codes`` for a symmetric ``grid``, ``asym_grid_codes`` for an asymmetric one."""
    return grid_codes(weight, grid) if grid.symmetric else asym_grid_codes(weight, grid)


def _codes_for(wg: np.ndarray, amax: np.ndarray, k: int, lo: int, hi: int):
    scale = np.where(amax > 0, amax / k, 1.0)
    codes = np.rint(wg / scale)
    ok = (np.abs(codes * scale - wg) <= 1e-5 * amax + 1e-30).all(-1) & (codes >= lo).all(-1) & (codes <= hi).all(-1)
    return codes, scale, ok[..., None]


def grid_codes(weight: np.ndarray, bits, group_size: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(codes int8 [rows, groups, group], scales float32 [rows, groups, 1], groups off the grid) on the symmetric
    grid of ``bits`` (a QuantGrid, or bits with ``group_size``; None: per channel)."""
    rows, cols = weight.shape
    grid = _grid(bits, group_size, True).check_columns(cols)
    bits, group = grid.bits, grid.group_size or cols
    lo, hi = grid.qmin, grid.qmax
    wg = weight.astype(np.float32).reshape(rows, cols // group, group)
    amax = np.abs(wg).max(-1, keepdims=True)
    # the product's round-to-nearest grid, used where no exact grid is found
    rtn_scale = np.where(amax > 0, amax * 2 / (2 ** bits - 1), 1.0)
    codes, scale = np.clip(np.rint(wg / rtn_scale), lo, hi), rtn_scale
    found = amax == 0
    for k in range(-lo, 0, -1):
        todo = ~found[..., 0]
        if not todo.any():
            break
        c, s, ok = _codes_for(wg[todo], amax[todo], k, lo, hi)
        hit = ok[:, 0]
        idx = np.argwhere(todo)[hit]
        codes[idx[:, 0], idx[:, 1]] = c[hit]
        scale[idx[:, 0], idx[:, 1]] = s[hit]
        found[idx[:, 0], idx[:, 1]] = True
    return codes.astype(np.int8), scale.astype(np.float32), int((~found).sum())


def asym_grid_codes(weight: np.ndarray, bits, group_size: int | None = None):
    """(codes uint8 [rows, groups, group], scales float32 and zero points uint8 [rows, groups, 1], groups off
    the grid) for the asymmetric grid of ``bits`` (a QuantGrid, or bits with ``group_size``): every value of a
    group is ``scale * n`` with integer ``n`` spanning at most 2^b - 1 steps; the largest |value| is ``scale * k``
    for some k <= 2^b - 1, so trying k = 1, 2, ... finds a scale that rebuilds the group, and zero = -min(n)
    (clipped so codes and zero stay in range). Groups on no such grid get the product's asymmetric
    round-to-nearest grid and are counted."""
    rows, cols = weight.shape
    grid = _grid(bits, group_size, False).check_columns(cols)
    group = grid.group_size or cols
    maxq = grid.qmax
    wg = weight.astype(np.float32).reshape(rows, cols // group, group)
    lo = np.minimum(wg.min(-1, keepdims=True), 0)
    hi = np.maximum(wg.max(-1, keepdims=True), 0)
    scale = np.where(hi > lo, (hi - lo) / maxq, 1.0)
    zero = np.clip(np.rint(-lo / scale), 0, maxq)
    codes = np.clip(np.rint(wg / scale) + zero, 0, maxq)
    amax = np.maximum(-lo, hi)
    found = amax == 0
    for k in range(1, maxq + 1):
        todo = ~found[..., 0]
        if not todo.any():
            break
        w, a = wg[todo], amax[todo]
        s = a / k
        n = np.rint(w / s)
        z = np.maximum(-n.min(-1, keepdims=True), 0)
        ok = ((np.abs(n * s - w) <= 1e-5 * a + 1e-30).all(-1) & (z[..., 0] <= maxq)
              & ((n + z) <= maxq).all(-1))
        idx = np.argwhere(todo)[ok]
        codes[idx[:, 0], idx[:, 1]] = (n + z)[ok]
        scale[idx[:, 0], idx[:, 1]] = s[ok]
        zero[idx[:, 0], idx[:, 1]] = z[ok]
        found[idx[:, 0], idx[:, 1]] = True
    return codes.astype(np.uint8), scale.astype(np.float32), zero.astype(np.uint8), int((~found).sum())


def maybe_asymmetric(weight: np.ndarray, bits, group_size: int | None = None, rows: int = 8) -> bool:
    """Whether any group of the first ``rows`` rows is on an asymmetric grid (a cheap test first: float
    weights would otherwise try every k up to 2^b - 1 on every group of the layer)."""
    sample = weight[:rows]
    grid = _grid(bits, group_size, False)
    groups = sample.shape[0] * (sample.shape[1] // (grid.group_size or sample.shape[1]))
    return asym_grid_codes(sample, grid)[3] < groups
