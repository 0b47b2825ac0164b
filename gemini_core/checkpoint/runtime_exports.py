"""Exports that keep their compression: ONNX with int8 QDQ or 4-bit MatMulNBits weights, and OpenVINO IR.

``export.write_onnx`` writes the dequantized float graph (378 KB for a digits point whose safetensors
is 27 KB). These writers start from the same stored model (weights already on the point's grid) and
store them compressed again, in each runtime's own format:

- 8 bits: ONNX Runtime ``quantize_static`` QDQ (int8 weights, per-channel scales, int8 activations
  calibrated on training batches). Static activations differ from torch's per-batch ones, so
  accuracy is checked against a tolerance, not for equality.
- 4 bits: ONNX Runtime's ``MatMulNBitsQuantizer`` (``MatMulNBits`` for MatMul weights,
  ``GatherBlockQuantized`` for embedding tables), block size = the point's group size, asymmetric
  like the engine's sub-8-bit grid. Linear layers on 2-D inputs export as ``Gemm``, which that
  quantizer does not take: they are rewritten to MatMul + Add first. Conv weights stay float.
- OpenVINO IR: ``nncf.compress_weights`` (INT8_SYM per channel at 8 bits, INT4_ASYM group 32 at
  4 bits, every layer) then ``openvino.save_model``.

Each writer reloads its file in its own runtime, measures test accuracy there and reports the file
size against the safetensors export at the same bits.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from gemini_core.config import storage_grid
from gemini_core.errors import ConfigError
from gemini_core.measure import classification_metrics
from gemini_core.runtimes.base import first_line, quiet, thread_count
from gemini_core.runtimes.onnxruntime_rt import export_onnx, quantize_static_qdq, session, session_runner
from gemini_core.runtimes.openvino_rt import INT4_GROUP, compile_model, compiled_runner, convert, nncf_int4_weights
from gemini_core.techniques.grid import QuantGrid

MAX_SIZE_RATIO = 1.15  # an export may be at most this much larger than the safetensors file at the same bits
# Accuracy a reloaded export must keep, in points of the point's own test accuracy: weight-only formats
# store the same grid (only scale rounding differs); static int8 also quantizes activations.
TOLERANCE_PTS = {"onnx-int8-qdq": 1.0, "onnx-matmulnbits": 0.5, "openvino-ir": 1.0}


def _accuracy(run, split, batch_size: int = 256) -> float:
    correct = 0
    for batch in split.batches(batch_size):
        correct += int((run(batch.inputs).argmax(-1) == batch.labels).sum())
    return correct / max(len(split), 1)


def _summary(kind: str, path_bytes: int, compressed, scenario, run, started: float, extra: dict) -> dict:
    """Size against safetensors, accuracy against the point, and whether both are within bounds."""
    safetensors_bytes = len(compressed.storage())
    point_accuracy = classification_metrics(compressed.model, scenario.splits.test, "cpu")["accuracy"]
    reloaded = _accuracy(run, scenario.splits.test)
    delta = (reloaded - point_accuracy) * 100
    return {"format": kind, "size_bytes": path_bytes, "safetensors_bytes": safetensors_bytes,
            "size_ratio_vs_safetensors": path_bytes / safetensors_bytes, "max_size_ratio": MAX_SIZE_RATIO,
            "size_ok": path_bytes <= MAX_SIZE_RATIO * safetensors_bytes,
            "point_accuracy": point_accuracy, "reloaded_accuracy": reloaded, "accuracy_delta_pts": delta,
            "tolerance_pts": TOLERANCE_PTS[kind], "accuracy_ok": -delta <= TOLERANCE_PTS[kind],
            "test_examples": len(scenario.splits.test), "seconds": round(time.perf_counter() - started, 2), **extra}


# -- ONNX int8 QDQ --------------------------------------------------------------------------------------
def write_onnx_int8(compressed, scenario, folder: Path, calibration_batches: int = 8, batch_size: int = 32,
                    threads: int | None = None) -> dict:
    """``folder/model.int8.onnx``: static QDQ int8, calibrated on training batches, reloaded and checked."""
    if compressed.config.bits != 8:
        raise ConfigError(f"int8 ONNX keeps 8-bit weights; this point has {compressed.config.bits} bits")
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(compressed.stored_model, scenario.example_inputs(2), folder / "model.fp32.tmp.onnx")
    calibration = [b.inputs for _, b in zip(range(calibration_batches), scenario.splits.train.batches(batch_size))]
    out = folder / "model.int8.onnx"
    try:
        info = quantize_static_qdq(fp32, out, calibration)
    finally:
        fp32.unlink(missing_ok=True)
    run = session_runner(session(out, thread_count(threads)))
    examples = sum(len(next(iter(b.values()))) for b in calibration)
    return _summary("onnx-int8-qdq", os.path.getsize(out), compressed, scenario, run, started,
                    {"file": out.name, "calibration": {"method": info["method"], "examples": examples}})


# -- ONNX 4-bit MatMulNBits ------------------------------------------------------------------------------
def gemm_to_matmul(model) -> int:
    """Rewrite ``Gemm(A, W, b)`` with a constant transposed W into ``MatMul(A, W^T) + b`` (in place).

    MatMulNBits only replaces MatMul nodes, and the dynamo exporter writes 2-D Linear layers as Gemm.
    Returns how many nodes were rewritten.
    """
    from onnx import helper, numpy_helper  # optional dependency (ONNX)

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    rewritten, nodes = 0, []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = (node.op_type == "Gemm" and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
                 and not attrs.get("transA", 0) and len(node.input) >= 2 and node.input[1] in weights)
        if not plain:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(weights[node.input[1]])
        matrix = np.ascontiguousarray(weight.T if attrs.get("transB", 0) else weight)  # MatMul wants (K, N)
        name = f"{node.input[1]}__kn"
        graph.initializer.append(numpy_helper.from_array(matrix, name))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}__matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], name], [product], name=f"{node.name}__matmul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}__add"))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)
    return rewritten


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _nbits_quantizer(model, grid: QuantGrid | int, granularity: str | None = None):
    """ONNX Runtime's weight-only quantizer matching the engine's ``grid`` (asymmetric below 8 bits, same
    group size); ``(model, bits, granularity)`` reads as the point's storage grid."""
    from onnxruntime.quantization.matmul_nbits_quantizer import (  # optional dep
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    if not isinstance(grid, QuantGrid):
        grid = storage_grid(grid, granularity)
    if grid.granularity == "tensor":
        raise ConfigError("4-bit ONNX stores blocks or channels; a per-tensor point would need its own format")
    bits, size = grid.bits, grid.group_size
    ops, axes = ("MatMul", "Gather"), (("MatMul", 0), ("Gather", 1))
    per_channel = size is None
    config = DefaultWeightOnlyQuantConfig(block_size=size or 32, is_symmetric=grid.symmetric, bits=bits,
                                          op_types_to_quantize=ops, quant_axes=axes,
                                          channel_wised_quantize=per_channel)
    return MatMulNBitsQuantizer(model, bits=bits, block_size=size or 32, is_symmetric=grid.symmetric,
                                algo_config=config, op_types_to_quantize=ops, quant_axes=axes,
                                channel_wised_quantize=per_channel)


def write_onnx_nbits(compressed, scenario, folder: Path, threads: int | None = None) -> dict:
    """``folder/model.int4.onnx``: MatMulNBits / GatherBlockQuantized weights, reloaded and checked."""
    import onnx  # optional dependency (ONNX)

    bits = compressed.config.bits
    if bits != 4:
        raise ConfigError(f"MatMulNBits export is for 4-bit points; this point has {bits} bits "
                          "(8 bits: write_onnx_int8)")
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = export_onnx(compressed.stored_model, scenario.example_inputs(2), folder / "model.fp32.tmp.onnx")
    try:
        model = onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    rewritten = gemm_to_matmul(model)
    quantizer = _nbits_quantizer(model, compressed.config.grid)
    with quiet():
        quantizer.process()
    out = folder / "model.int4.onnx"
    quantizer.model.save_model_to_file(str(out), False)
    ops = [node.op_type for node in onnx.load(str(out), load_external_data=False).graph.node]
    run = session_runner(session(out, thread_count(threads)))
    float_convs = ops.count("Conv")
    extra = {"file": out.name, "gemm_rewritten": rewritten, "matmulnbits_nodes": ops.count("MatMulNBits"),
             "gather_block_quantized_nodes": ops.count("GatherBlockQuantized"), "float_conv_nodes": float_convs}
    if float_convs:
        extra["note"] = f"{float_convs} Conv weights stay float: MatMulNBits covers MatMul and embedding weights only"
    return _summary("onnx-matmulnbits", os.path.getsize(out), compressed, scenario, run, started, extra)


# -- OpenVINO IR -------------------------------------------------------------------------------------------
def write_openvino_ir(compressed, scenario, folder: Path, threads: int | None = None) -> dict:
    """``folder/model.xml`` + ``.bin`` with compressed weights (NNCF), reloaded with ``read_model`` and checked."""
    import nncf  # optional dependency (OpenVINO weight compression)
    import openvino as ov  # optional dependency (OpenVINO)

    grid = compressed.config.grid
    bits = grid.bits
    if bits not in (8, 4):
        raise ConfigError(f"OpenVINO IR keeps 8- or 4-bit weights; this point has {bits} bits")
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    ov_model = convert(compressed.stored_model, scenario.example_inputs(2))
    if bits == 8:  # the engine's 8-bit codes are symmetric (storage_grid), written per channel
        mode = nncf.CompressWeightsMode.INT8_SYM
        try:
            with quiet():
                ov_model = nncf.compress_weights(ov_model, mode=mode)
        except Exception as exc:  # NNCF raises many types; one line names the step
            raise ConfigError(f"NNCF weight compression failed: {first_line(exc)}") from None
    else:
        if grid.group_size != INT4_GROUP:
            raise ConfigError(f"OpenVINO 4-bit IR is written with group {INT4_GROUP}; this point is "
                              f"{grid.granularity_text}")
        mode = nncf.CompressWeightsMode.INT4_ASYM
        ov_model = nncf_int4_weights(ov_model)
    xml = folder / "model.xml"
    ov.save_model(ov_model, str(xml), compress_to_fp16=False)
    reloaded = ov.Core().read_model(str(xml))
    run = compiled_runner(compile_model(reloaded, "f32", thread_count(threads)))
    size_bytes = os.path.getsize(xml) + os.path.getsize(xml.with_suffix(".bin"))
    return _summary("openvino-ir", size_bytes, compressed, scenario, run, started,
                    {"files": [xml.name, xml.with_suffix(".bin").name], "weight_mode": str(mode)})
