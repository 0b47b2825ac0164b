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

from gemini_core.kinds.llm.grids import asym_grid_codes, grid_codes, maybe_asymmetric
from gemini_core.techniques.grid import QuantGrid


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


def _on_point_grid(weight: np.ndarray, grid: QuantGrid) -> bool:
    """Whether every group of ``weight`` sits on the point's grid (symmetric or asymmetric); the first rows
    are tried first, so a float head costs one cheap check."""
    for sample in (weight[:8], weight):
        if grid_codes(sample, grid)[2] and asym_grid_codes(sample, grid)[3]:
            return False
    return True


def compress_matmul_weights(ov_model, grid: QuantGrid | int | None, group_size: int | None = None,
                            head_bits: int | None = 8, head_group: int | None = None,
                            vocab_size: int | None = None) -> dict:
    """Replace every MatMul weight in place: decoder Linears on the point's ``grid`` (a QuantGrid, or bits and
    ``group_size``; None: kept float), each layer on its recovered symmetric or asymmetric grid; the LM head
    (rows == ``vocab_size``) on the point's grid when it sits on one (a calibrated head), else at
    ``head_bits``/``head_group`` (None: kept float). Returns counts for the record."""
    point = QuantGrid.coerce(grid, group_size)
    head = QuantGrid.coerce(head_bits, head_group)
    layers = off = head_off = asym = 0
    head_stored = head
    for const in _weight_constants(ov_model):
        weight = const.get_data()
        if weight.dtype != np.float32:
            continue
        is_head = vocab_size is not None and weight.shape[0] == vocab_size
        stored = head if is_head else point
        head_on_grid = is_head and point is not None and _on_point_grid(weight, point)
        if head_on_grid:  # a calibrated head (quantize's head recipes) is stored on its own grid
            stored = point
        if stored is None:
            continue
        codes, scale, missed = grid_codes(weight, stored)
        zero = None
        if missed and (not is_head or head_on_grid) and maybe_asymmetric(weight, stored):
            a_codes, a_scale, a_zero, a_missed = asym_grid_codes(weight, stored)
            if a_missed < missed:
                codes, scale, zero, missed = a_codes, a_scale, a_zero, a_missed
                asym += 1
        node = _decompressed(codes, scale, stored.bits, weight.shape, const.get_friendly_name(), zero)
        for target in list(const.output(0).get_target_inputs()):
            consumer = target.get_node()
            if consumer.get_type_name() == "Convert":  # an f32 -> f32 convert left by the frontend
                for t2 in list(consumer.output(0).get_target_inputs()):
                    t2.replace_source_output(node.output(0))
            else:
                target.replace_source_output(node.output(0))
        if is_head:
            head_off += missed
            head_stored = stored
        else:
            layers += 1
            off += missed
    ov_model.validate_nodes_and_infer_types()
    return {"weight_bits": point.bits if point else None, "group_size": point.group_size if point else None,
            "head_bits": head_stored.bits if head_stored else None,
            "head_group": head_stored.group_size if head_stored else None,
            "layers_compressed": layers, "layers_asymmetric": asym, "groups_off_grid": off,
            "head_groups_requantized": head_off}
