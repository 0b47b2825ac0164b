"""ONNX Runtime as a runtime: fp32, and int8 by static QDQ quantization calibrated on training batches.

The graph comes from torch's dynamo exporter (the old exporter bakes in the sequence
length with transformers 5 and gives wrong outputs). Sessions use the product's thread count and do
not spin idle threads: a spinning ORT pool steals the cores other variants are timed on when runs
are interleaved.

Int8 recipes (the first and last are ``onnxruntime.quantization.quantize_static``, QDQ, MinMax calibration):
- ``int8`` (the product's static one): pre-processed like the peer, per-channel weight scales, uint8
  activations, only the layers that hold weights (``WEIGHT_OPS``). Quantizing every op the quantizer knows
  (the earlier recipe, and the peer's) was 10% faster on one run but cost MiniLM/SST-2 18 points
  (0.790 -> 0.610; 10.7-10.9 points in the earlier benchmark and the AVX2 report): it puts the attention
  scores, their mask and the layer norms through int8. On a CPU without VNNI/AMX the weights are 7-bit
  (``reduce_range``): ONNX Runtime's AVX2 int8 kernels saturate with 8-bit ones;
- ``int8-dynamic``: ``quantize_dynamic`` of the same weight layers, per-channel; activations are quantized per
  batch at run time, so nothing is calibrated. On MiniLM / SST-2 it kept accuracy (+0.3 points) and ran
  2.9x torch fp32 at 1 thread (static on the same layers: 2.6x, -2.3 points; over every op: -18 points);
- ``int8-peer``: ONNX Runtime's documented recipe as a user would apply it by hand
  (``quant_pre_process`` then ``quantize_static`` with its defaults: per-tensor, every op it knows).
"""
from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gemini_core.errors import GeminiError
from gemini_core.runtimes.base import (
    CalibrationInfo,
    Inputs,
    RuntimeModel,
    calibration_counts,
    check_precision,
    first_line,
    quiet,
    register_runtime,
    require_calibration,
    thread_count,
    to_numpy,
)
from gemini_core.runtimes.cpu import cpu_record

ORT_PRECISIONS = ("fp32", "int8", "int8-dynamic", "int8-peer")
# The layers that hold weights. Quantizing every op the quantizer knows (its default) also puts the attention
# scores, their mask and the layer norms through int8: on MiniLM fine-tuned on SST-2 that cost 18 points
# (0.790 -> 0.610, 300 test examples); these four alone: -2.3 points static, +0.3 dynamic (same split).
WEIGHT_OPS = ["MatMul", "Gemm", "Conv", "Gather"]


def dynamic_shapes(example_inputs: Inputs) -> dict:
    """Batch is dynamic for every input; integer (N, L) inputs (token ids, masks) also in sequence length."""
    from torch.export import Dim

    batch, sequence = Dim("batch"), Dim("sequence")
    shapes = {}
    for name, tensor in example_inputs.items():
        dims = {0: batch}
        if tensor.dim() == 2 and not tensor.is_floating_point():
            dims[1] = sequence
        shapes[name] = dims
    return shapes


def export_onnx(model: nn.Module, example_inputs: Inputs, path: Path) -> Path:
    """``model`` as one self-contained fp32 ONNX file (dynamo exporter, dynamic batch / sequence)."""
    model = copy.deepcopy(model).float().cpu().eval()
    # Two examples at least: torch.export specialises a dimension of size 1 and the graph would fix it.
    example = {k: (v if v.shape[0] > 1 else v.repeat(2, *([1] * (v.dim() - 1)))) for k, v in example_inputs.items()}
    try:
        with quiet():
            torch.onnx.export(model, (), str(path), kwargs=example, dynamo=True, dynamic_shapes=dynamic_shapes(example),
                              input_names=list(example), output_names=["logits"], external_data=False,
                              verbose=False, report=False)
    except Exception as exc:  # the exporter raises many types; the user needs one line naming the step
        raise GeminiError(f"ONNX export failed: {type(exc).__name__}: {first_line(exc)}") from None
    strip_debug_info(path)
    return path


def strip_debug_info(path: Path) -> None:
    """Drop the exporter's per-node metadata (stack traces, module paths) and doc strings from the file.

    They do not change what runs, but on a small model they outweigh the weights (a 2-layer BERT:
    250 KB of node metadata against 30 KB of 4-bit weights) and would hide what compression saved.
    """
    import onnx  # optional dependency (ONNX)

    model = onnx.load(str(path))
    for graph in [model.graph, *(f for f in model.functions)]:
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        del value.metadata_props[:]
    onnx.save(model, str(path))


def session(path: Path | str, threads: int):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and no idle spinning."""
    import onnxruntime as ort  # optional dependency: only needed when ONNX Runtime is chosen

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def session_runner(sess):
    """``inputs -> logits`` over a session; inputs the graph does not use are left out of the feed."""
    wanted = [i.name for i in sess.get_inputs()]

    def run(inputs: Inputs) -> torch.Tensor:
        feed = to_numpy({k: v for k, v in inputs.items() if k in wanted})
        return torch.from_numpy(np.ascontiguousarray(sess.run(None, feed)[0])).float()

    return run


def calibration_reader(calibration: list[Inputs], input_names: list[str]):
    """An ONNX Runtime CalibrationDataReader over the calibration batches (numpy feeds)."""
    from onnxruntime.quantization import CalibrationDataReader  # optional dependency (ONNX Runtime)

    feeds = [to_numpy({k: v for k, v in batch.items() if k in input_names}) for batch in calibration]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._items = iter(feeds)

        def get_next(self):
            return next(self._items, None)

        def rewind(self):
            self._items = iter(feeds)

    return Reader()


def _input_names(path: Path) -> list[str]:
    import onnx  # optional dependency (ONNX)

    return [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


def pre_process(fp32_path: Path, prepared: Path) -> tuple[Path, list[str]]:
    """ONNX Runtime's ``quant_pre_process`` (ONNX shape inference + graph optimisation) before quantizing.

    Symbolic shape inference is skipped (``skip_symbolic_shape=True``, a documented option): on the
    dynamo exporter's transformer graphs it fails ("Incomplete symbolic shape inference") and, when
    it does, leaves ``sym_shape_infer_temp.onnx`` plus a model-sized ``<uuid>.data`` file in the
    current directory. Returns (model to quantize, notes).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process  # optional dependency

    try:
        with quiet():
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    except Exception as exc:  # reported on the point; quantization goes on from the exported graph
        return fp32_path, [f"quant_pre_process failed ({first_line(exc)}); quantized the exported graph directly"]
    return prepared, ["quant_pre_process with skip_symbolic_shape=True"]


def quantize_static_qdq(fp32_path: Path, out_path: Path, calibration: list[Inputs], peer: bool = False) -> dict:
    """Static int8 QDQ model at ``out_path``; returns what was done (recipe, pre-processing outcome)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static  # optional

    names = _input_names(fp32_path)
    # Both recipes pre-process first (shape inference + graph optimisation), as ONNX Runtime documents.
    source, notes = pre_process(fp32_path, out_path.with_suffix(".prep.onnx"))
    options = dict(quant_format=QuantFormat.QDQ, calibrate_method=CalibrationMethod.MinMax,
                   activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    seven_bit = False
    if not peer:
        # Without int8 dot-product instructions (VNNI/AMX), MLAS multiplies u8 x s8 pairs with VPMADDUBSW, whose
        # int16 sums saturate; 7-bit weights (``reduce_range``, ONNX Runtime's documented fix) cannot overflow.
        seven_bit = not cpu_record()["int8_dot_product"]
        # uint8 activations: MLAS's u8s8 kernels; s8s8 QDQ ran MiniLM 1.7x slower (1 thread, AVX-512 VNNI).
        options.update(per_channel=True, reduce_range=seven_bit, op_types_to_quantize=WEIGHT_OPS,
                       activation_type=QuantType.QUInt8)
    try:
        with quiet():
            quantize_static(str(source), str(out_path), calibration_reader(calibration, names), **options)
    except Exception as exc:  # quantizer errors are many types; one line says which step failed
        raise GeminiError(f"ONNX Runtime static quantization failed: {first_line(exc)}") from None
    finally:
        if source != fp32_path:
            source.unlink(missing_ok=True)  # the pre-processed float graph is an intermediate, not an export
    method = ("minmax, QDQ static, " + ("per-tensor (onnxruntime documented recipe: quant_pre_process + "
                                        "quantize_static defaults)" if peer else
                                        "per-channel weights, uint8 activations, weight layers only "
                                        f"({'/'.join(WEIGHT_OPS)}; onnxruntime quant_pre_process + quantize_static)"))
    if seven_bit:
        method += ", 7-bit weights (reduce_range: this CPU has no VNNI/AMX, 8-bit products would saturate)"
    return {"method": method, "notes": notes}


def quantize_dynamic_int8(fp32_path: Path, out_path: Path) -> dict:
    """Dynamic int8 at ``out_path``: per-channel int8 weights of the weight layers, activations quantized per batch
    at run time (no calibration, so no activation range to get wrong). Returns what was done."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # optional dependency

    source, notes = pre_process(fp32_path, out_path.with_suffix(".prep.onnx"))
    seven_bit = not cpu_record()["int8_dot_product"]  # as for static: AVX2 int8 products saturate with 8-bit weights
    try:
        with quiet():
            quantize_dynamic(str(source), str(out_path), per_channel=True, weight_type=QuantType.QInt8,
                             op_types_to_quantize=WEIGHT_OPS, reduce_range=seven_bit)
    except Exception as exc:  # quantizer errors are many types; one line says which step failed
        raise GeminiError(f"ONNX Runtime dynamic quantization failed: {first_line(exc)}") from None
    finally:
        if source != fp32_path:
            source.unlink(missing_ok=True)
    method = (f"dynamic int8 (no calibration), per-channel weights, weight layers only ({'/'.join(WEIGHT_OPS)}; "
              "onnxruntime quant_pre_process + quantize_dynamic)")
    if seven_bit:
        method += ", 7-bit weights (reduce_range: this CPU has no VNNI/AMX, 8-bit products would saturate)"
    return {"method": method, "notes": notes}


def ort_available() -> str | None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401  (optional dependency: only checking that it imports)
    except ImportError as exc:
        return f"onnxruntime is not installed ({first_line(exc)}): pip install onnxruntime onnx onnxscript"
    return None


@register_runtime("onnxruntime")
class OnnxRuntime:
    name = "onnxruntime"
    precisions = ORT_PRECISIONS

    def available(self) -> str | None:
        return ort_available()

    def build(self, model: nn.Module, example_inputs: Inputs, calibration: list[Inputs] | None,
              precision: str, threads: int | None = None) -> RuntimeModel:
        import onnxruntime as ort  # optional dependency: version recorded on the point

        check_precision(self, precision)
        threads = thread_count(threads)
        with tempfile.TemporaryDirectory(prefix="gemini-ort-") as tmp:
            path = export_onnx(model, example_inputs, Path(tmp) / "model.onnx")
            info, calib = {}, CalibrationInfo("none")
            if precision == "int8-dynamic":
                out = Path(tmp) / "model.int8.onnx"
                info = quantize_dynamic_int8(path, out)
                path = out
                calib = CalibrationInfo(info["method"])
            elif precision != "fp32":
                calibration = require_calibration("onnxruntime", calibration)
                out = Path(tmp) / "model.int8.onnx"
                info = quantize_static_qdq(path, out, calibration, peer=precision == "int8-peer")
                path = out
                calib = CalibrationInfo(info["method"], *calibration_counts(calibration))
            sess = session(path, threads)
            size_bytes = os.path.getsize(path)
        return RuntimeModel("onnxruntime", precision, session_runner(sess), size_bytes, calib, threads,
                            details={"onnxruntime": ort.__version__, "notes": info.get("notes", [])})
