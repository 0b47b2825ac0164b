"""OpenVINO as a runtime: fp32 or bf16 compute, and int8 through NNCF post-training quantization.

``openvino.convert_model`` converts the torch module directly (it handles the transformers
modules with an input dict). The compute precision is ``INFERENCE_PRECISION_HINT`` and the thread
count ``INFERENCE_NUM_THREADS``, with one stream (latency of one request, as torch is timed).

Two int8 recipes, both ``nncf.quantize`` on the converted model with the calibration batches:
- ``int8`` (the product's): every calibration batch used (``subset_size``), the MIXED preset
  (asymmetric activations) and the TRANSFORMER model type when the model has attention. For a
  transformer with fewer than 300 calibration batches this is the peer's call (MIXED is NNCF's default
  for TRANSFORMER): measured on MiniLM, the two are the same size and speed;
- ``int4-weights``: storage separate from compute: ``nncf.compress_weights`` INT4_ASYM, group 32, every
  layer (data-free, no calibration); OpenVINO's CPU plugin computes those layers from the 4-bit weights;
- ``int8-peer``: NNCF's documented minimal call, ``nncf.quantize(model, nncf.Dataset(data))``,
  with ``model_type=TRANSFORMER`` for transformers as its documentation asks, other settings default.

``fp32-peer`` is OpenVINO applied by hand as its documentation shows it: ``convert_model`` with the example
input, ``compile_model`` with the thread count only (every other property at its default).
"""
from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from gemini_core.errors import ConfigError, GeminiError
from gemini_core.runtimes.base import (
    CalibrationInfo,
    Inputs,
    RuntimeModel,
    calibration_counts,
    check_precision,
    first_line,
    is_transformer,
    quiet,
    register_runtime,
    require_calibration,
    thread_count,
    to_numpy,
)
from gemini_core.runtimes.cpu import onednn_int8_dot_product

OV_PRECISIONS = ("fp32", "fp32-peer", "bf16", "int8", "int8-peer", "int4-weights")
# Compute precision per stored precision: quantized graphs keep their float parts in f32. The fp32 peer sets
# none: OpenVINO's default, which is bf16 on CPUs with AVX512-BF16 or AMX (so it is not an fp32 figure there).
_HINT = {"fp32": "f32", "fp32-peer": None, "bf16": "bf16", "int8": "f32", "int8-peer": "f32", "int4-weights": "f32"}
INT4_GROUP = 32  # the engine's default 4-bit granularity (group-32)


def openvino_available() -> str | None:
    try:
        import openvino  # noqa: F401  (optional dependency: only checking that it imports)
    except ImportError as exc:
        return f"openvino is not installed ({first_line(exc)}): pip install openvino nncf"
    return None


def nncf_available() -> str | None:
    try:
        import nncf  # noqa: F401  (optional dependency: only checking that it imports)
    except ImportError as exc:
        return f"nncf is not installed ({first_line(exc)}): pip install nncf"
    return None


def convert(model: nn.Module, example_inputs: Inputs):
    """The torch module as an OpenVINO model (float, dynamic shapes traced from the example)."""
    import openvino as ov  # optional dependency: only when OpenVINO is chosen

    model = copy.deepcopy(model).float().cpu().eval()  # a copy: .float() would change the caller's module
    try:
        with quiet(), torch.no_grad():
            return ov.convert_model(model, example_input=dict(example_inputs))
    except Exception as exc:  # the frontend raises many types; one line names the step
        raise GeminiError(f"OpenVINO conversion failed: {type(exc).__name__}: {first_line(exc)}") from None


def nncf_quantize(ov_model, calibration: list[Inputs], transformer: bool, peer: bool):
    """NNCF post-training int8 on ``ov_model``; returns (model, method description)."""
    import logging

    import nncf  # optional dependency: only for OpenVINO int8

    nncf.set_log_level(logging.ERROR)
    names = {i.get_any_name() for i in ov_model.inputs}
    data = nncf.Dataset([to_numpy({k: v for k, v in batch.items() if k in names}) for batch in calibration])
    options = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    overflow_fix = False
    if not peer:  # every calibration batch counts (NNCF's default stops at 300 dataset items)
        options.update(subset_size=len(calibration), preset=nncf.QuantizationPreset.MIXED)
        # Without VNNI/AMX the CPU plugin's int8 products go through int16 sums that saturate; NNCF's overflow fix
        # (7-bit weights) on every layer, not only the first, is OpenVINO's documented workaround.
        overflow_fix = not onednn_int8_dot_product()
        if overflow_fix:
            from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

            options["advanced_parameters"] = AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE)
    try:
        with quiet():
            quantized = nncf.quantize(ov_model, data, **options)
    except Exception as exc:  # NNCF raises many types; one line names the step
        raise GeminiError(f"NNCF quantization failed: {first_line(exc)}") from None
    what = ("nncf.quantize defaults (documented minimal recipe)" if peer
            else "nncf.quantize, MIXED preset, every calibration batch")
    # NNCF's own range estimation; for transformers it also applies SmoothQuant and fast bias correction.
    return quantized, (f"{what}" + (", TRANSFORMER model type" if transformer else "")
                       + (", overflow fix on every layer (no VNNI/AMX in force)" if overflow_fix else ""))


def nncf_int4_weights(ov_model):
    """4-bit asymmetric group-32 weights on every layer (embeddings included, as the engine stores them)."""
    import nncf  # optional dependency: only for OpenVINO weight compression
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    # A layer whose width is not a multiple of the group gets a smaller group (ADJUST) instead of an error.
    advanced = AdvancedCompressionParameters(group_size_fallback_mode=GroupSizeFallbackMode.ADJUST,
                                             min_adjusted_group_size=8)
    try:
        with quiet():
            return nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT4_ASYM, group_size=INT4_GROUP,
                                         ratio=1.0, all_layers=True, advanced_parameters=advanced)
    except Exception as exc:  # NNCF raises many types; one line names the step
        raise GeminiError(f"NNCF weight compression failed: {first_line(exc)}") from None


def ir_size_bytes(ov_model) -> tuple[int, int]:
    """(xml + bin bytes, bin bytes) of the OpenVINO IR as saved, weights kept at their stored precision.

    The bin holds the weights; the xml (the graph as text) is a fixed cost that dominates tiny models.
    """
    import openvino as ov  # optional dependency

    with tempfile.TemporaryDirectory(prefix="gemini-ov-") as tmp:
        xml = Path(tmp) / "model.xml"
        ov.save_model(ov_model, str(xml), compress_to_fp16=False)
        weights = os.path.getsize(xml.with_suffix(".bin"))
        return os.path.getsize(xml) + weights, weights


def compile_model(ov_model, precision_hint: str | None, threads: int):
    """Compiled for CPU: one stream, ``threads`` threads, the given compute precision (None: only the thread
    count is set, as a user applying OpenVINO by hand would)."""
    import openvino as ov  # optional dependency

    core = ov.Core()
    if precision_hint is None:
        return core.compile_model(ov_model, "CPU", {"INFERENCE_NUM_THREADS": threads})
    if precision_hint == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise ConfigError("OpenVINO bf16: this CPU has no bf16 support (OPTIMIZATION_CAPABILITIES lacks BF16)")
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": precision_hint,
              "PERFORMANCE_HINT": "LATENCY"}
    return core.compile_model(ov_model, "CPU", config)


def compiled_runner(compiled):
    """``inputs -> logits`` over a compiled model (one infer request, reused)."""
    request = compiled.create_infer_request()
    wanted = {i.get_any_name() for i in compiled.inputs}

    def run(inputs: Inputs) -> torch.Tensor:
        feed = to_numpy({k: v for k, v in inputs.items() if k in wanted})
        out = request.infer(feed)
        return torch.from_numpy(out[compiled.output(0)].copy()).float()

    return run


@register_runtime("openvino")
class OpenVinoRuntime:
    name = "openvino"
    precisions = OV_PRECISIONS

    def available(self) -> str | None:
        return openvino_available()

    def build(self, model: nn.Module, example_inputs: Inputs, calibration: list[Inputs] | None,
              precision: str, threads: int | None = None) -> RuntimeModel:
        import openvino as ov  # optional dependency: version recorded on the point

        check_precision(self, precision)
        threads = thread_count(threads)
        ov_model, calib = convert(model, example_inputs), CalibrationInfo("none")
        if precision.startswith("int8"):
            reason = nncf_available()
            if reason:
                raise ConfigError(f"OpenVINO int8: {reason}")
            calibration = require_calibration("openvino", calibration)
            ov_model, method = nncf_quantize(ov_model, calibration, is_transformer(model),
                                             peer=precision == "int8-peer")
            calib = CalibrationInfo(method, *calibration_counts(calibration))
        elif precision == "int4-weights":
            reason = nncf_available()
            if reason:
                raise ConfigError(f"OpenVINO int4 weights: {reason}")
            ov_model = nncf_int4_weights(ov_model)
            calib = CalibrationInfo(f"none (data-free weight compression, INT4_ASYM group {INT4_GROUP})")
        compiled = compile_model(ov_model, _HINT[precision], threads)
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        in_force = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)  # "f32" / "bf16"
        size_bytes, weight_bytes = ir_size_bytes(ov_model)
        return RuntimeModel("openvino", precision, compiled_runner(compiled), size_bytes, calib, threads,
                            details={"openvino": ov.__version__, "inference_precision": in_force,
                                     "ir_weights_bytes": weight_bytes, "compiled": compiled_properties(compiled)})


def compiled_properties(compiled) -> dict:
    """The properties in force that decide speed (threads, streams, hint, pinning), as the plugin reports them."""
    out = {}
    for name in ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT", "ENABLE_CPU_PINNING",
                 "ENABLE_HYPER_THREADING", "SCHEDULING_CORE_TYPE"):
        try:
            out[name] = str(compiled.get_property(name))
        except Exception:  # a property this OpenVINO version does not report: left out
            continue
    return out
