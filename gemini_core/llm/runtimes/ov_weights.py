"""Store an OpenVINO LLM's MatMul weights as integer codes and scales, on the product's own grid.

The product's quantized weights (RTN, GPTQ) are stored dequantized: every group of ``group_size``
input columns holds ``scale * code`` with integer codes in [-2^(b-1), 2^(b-1)-1]. Compressing them
again with NNCF's data-free ``compress_weights`` is not lossless: NNCF derives each scale from the
group's extreme value / 2^(b-1) (the negative extreme's convention), so a group whose extreme is the
positive code 2^(b-1)-1 lands on a different grid and is rounded again. Here the grid is *recovered*
instead (scale = |extreme| / k for the k that makes every value an in-range integer multiple), and the
codes are written in the subgraph NNCF itself emits (i4 / i8 constant -> f16 -> x f16 scale ->
reshape -> f32), which OpenVINO's CPU plugin runs as a compressed fully-connected layer (and as a
compressed gather for a tied embedding). Groups that are not on any grid (a float model, or AWQ, whose
per-column scaling is not folded) get the product's round-to-nearest grid and are counted.

An asymmetric grid (``scale * (code - zero)``, codes and zero point in 0 .. 2^b-1) is recovered the same way
(``asym_grid_codes``) and written in NNCF's asymmetric layout (u4 / u8 codes - u4 / u8 zero point, x f16
scale). A layer is stored on the symmetric grid when that holds every group, else on the asymmetric one
when it holds more of them.
"""
from __future__ import annotations

import numpy as np

from gemini_core.errors import ConfigError


def _codes_for(wg: np.ndarray, amax: np.ndarray, k: int, lo: int, hi: int):
    scale = np.where(amax > 0, amax / k, 1.0)
    codes = np.rint(wg / scale)
    ok = (np.abs(codes * scale - wg) <= 1e-5 * amax + 1e-30).all(-1) & (codes >= lo).all(-1) & (codes <= hi).all(-1)
    return codes, scale, ok[..., None]


def grid_codes(weight: np.ndarray, bits: int, group_size: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(codes int8 [rows, groups, group], scales float32 [rows, groups, 1], groups off the grid)."""
    rows, cols = weight.shape
    group = group_size or cols
    if cols % group:
        raise ConfigError(f"group size {group} does not divide the {cols} input columns")
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
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


def asym_grid_codes(weight: np.ndarray, bits: int, group_size: int | None):
    """(codes uint8 [rows, groups, group], scales float32 and zero points uint8 [rows, groups, 1], groups off
    the grid) for an asymmetric grid: every value of a group is ``scale * n`` with integer ``n`` spanning at
    most 2^b - 1 steps; the largest |value| is ``scale * k`` for some k <= 2^b - 1, so trying k = 1, 2, ...
    finds a scale that rebuilds the group, and zero = -min(n) (clipped so codes and zero stay in range).
    Groups on no such grid get the product's asymmetric round-to-nearest grid and are counted."""
    rows, cols = weight.shape
    group = group_size or cols
    if cols % group:
        raise ConfigError(f"group size {group} does not divide the {cols} input columns")
    maxq = 2 ** bits - 1
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


def _maybe_asymmetric(weight: np.ndarray, bits: int, group_size: int | None, rows: int = 8) -> bool:
    """Whether any group of the first ``rows`` rows is on an asymmetric grid (a cheap test first: float
    weights would otherwise try every k up to 2^b - 1 on every group of the layer)."""
    sample = weight[:rows]
    groups = sample.shape[0] * (sample.shape[1] // (group_size or sample.shape[1]))
    return asym_grid_codes(sample, bits, group_size)[3] < groups


def _decompressed(codes: np.ndarray, scale: np.ndarray, bits: int, shape, name: str, zero: np.ndarray | None = None):
    import openvino as ov
    from openvino import opset13 as ops

    if zero is None:
        code_type = ov.Type.i4 if bits <= 4 else ov.Type.i8
    else:
        code_type = ov.Type.u4 if bits <= 4 else ov.Type.u8
    node = ops.convert(ops.constant(codes, dtype=code_type, name=name), ov.Type.f16)
    if zero is not None:
        node = ops.subtract(node, ops.convert(ops.constant(zero, dtype=code_type, name=f"{name}/zero_point"),
                                              ov.Type.f16))
    node = ops.multiply(node, ops.constant(scale.astype(np.float16), name=f"{name}/scale"))
    node = ops.reshape(node, ops.constant(np.array(shape, dtype=np.int64)), special_zero=False)
    return ops.convert(node, ov.Type.f32)


def _weight_constants(ov_model):
    """(constant node, consumer MatMuls) for every 2-D f32 constant that is a MatMul's weight."""
    found = {}
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        src = op.input_value(1).get_node()
        if src.get_type_name() == "Convert":
            src = src.input_value(0).get_node()
        if src.get_type_name() == "Constant" and len(src.get_output_shape(0)) == 2:
            found[src.get_friendly_name()] = src
    return list(found.values())


def compress_matmul_weights(ov_model, bits: int, group_size: int | None, head_bits: int | None = 8,
                            head_group: int | None = None, vocab_size: int | None = None) -> dict:
    """Replace every MatMul weight in place: decoder Linears at ``bits``/``group_size`` on their
    recovered grid; the LM head (rows == ``vocab_size``) at ``head_bits``/``head_group`` (None: kept
    float). Returns counts for the record."""
    layers = off = head_off = asym = 0
    for const in _weight_constants(ov_model):
        weight = const.get_data()
        if weight.dtype != np.float32:
            continue
        is_head = vocab_size is not None and weight.shape[0] == vocab_size
        b, g = (head_bits, head_group) if is_head else (bits, group_size)
        if b is None:
            continue
        codes, scale, missed = grid_codes(weight, b, g)
        zero = None
        if missed and not is_head and _maybe_asymmetric(weight, b, g):
            a_codes, a_scale, a_zero, a_missed = asym_grid_codes(weight, b, g)
            if a_missed < missed:
                codes, scale, zero, missed = a_codes, a_scale, a_zero, a_missed
                asym += 1
        node = _decompressed(codes, scale, b, weight.shape, const.get_friendly_name(), zero)
        for target in list(const.output(0).get_target_inputs()):
            consumer = target.get_node()
            if consumer.get_type_name() == "Convert":  # an f32 -> f32 convert left by the frontend
                for t2 in list(consumer.output(0).get_target_inputs()):
                    t2.replace_source_output(node.output(0))
            else:
                target.replace_source_output(node.output(0))
        if is_head:
            head_off += missed
        else:
            layers += 1
            off += missed
    ov_model.validate_nodes_and_infer_types()
    return {"weight_bits": bits, "group_size": group_size, "head_bits": head_bits, "head_group": head_group,
            "layers_compressed": layers, "layers_asymmetric": asym, "groups_off_grid": off,
            "head_groups_requantized": head_off}
