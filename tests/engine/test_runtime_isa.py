"""AVX2 as a machine of its own: int8 weights that cannot saturate AVX2's int8 products, OpenVINO as a user applies
it by hand (the peer the product is compared with), and an instruction-set cap that says whether it took effect."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gemini_core.runtimes import onnxruntime_rt
from gemini_core.runtimes.catalog import available_runtimes, build
from gemini_core.runtimes.cpu import cpu_record, isa_cap_environment

from .runtime_models import mlp_inputs, mlp_model


def _needs(runtime: str) -> None:
    reason = available_runtimes().get(runtime)
    if reason:
        pytest.skip(reason)


def _int8_weight_codes(path) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return [numpy_helper.to_array(t) for t in model.graph.initializer
            if t.data_type == onnx.TensorProto.INT8 and t.dims and len(t.dims) == 2]


@pytest.mark.parametrize("vnni", [False, True])
def test_onnxruntime_int8_weights_are_7_bit_only_where_the_cpu_has_no_vnni(monkeypatch, tmp_path, vnni):
    _needs("onnxruntime")
    monkeypatch.setattr(onnxruntime_rt, "cpu_record", lambda: {**cpu_record(), "int8_dot_product": vnni})
    fp32 = onnxruntime_rt.export_onnx(mlp_model(), mlp_inputs(4), tmp_path / "m.onnx")
    info = onnxruntime_rt.quantize_static_qdq(fp32, tmp_path / "q.onnx", [mlp_inputs(16, seed=s) for s in range(4)])
    codes = _int8_weight_codes(tmp_path / "q.onnx")
    assert codes, "no int8 weight matrix in the quantized graph"
    widest = max(int(np.abs(c.astype(np.int32)).max()) for c in codes)
    if vnni:
        assert widest > 64 and "7-bit" not in info["method"]  # full 8-bit range where VNNI sums cannot saturate
    else:
        assert widest <= 64 and "7-bit weights" in info["method"]  # reduce_range: [-64, 64]


def test_openvino_hand_applied_peer_sets_only_the_thread_count():
    _needs("openvino")
    inputs = mlp_inputs(8)
    product = build("openvino", mlp_model(), inputs, precision="fp32", threads=1)
    peer = build("openvino", mlp_model(), inputs, precision="fp32-peer", threads=1)
    assert product.record()["compiled"]["INFERENCE_NUM_THREADS"] == "1"
    assert peer.record()["compiled"]["INFERENCE_NUM_THREADS"] == "1"
    assert product.record()["inference_precision"] == "f32"  # the product pins fp32; the peer takes the default
    assert np.allclose(peer(inputs).numpy(), product(inputs).numpy(), atol=0.05)


def test_the_avx2_cap_also_caps_torchs_int8_kernels():
    # torch's dynamic int8 Linear (FBGEMM) ignores ATEN_CPU_CAPABILITY; without its own variable an "AVX2" run
    # times dense-int8 on AVX-512 VNNI kernels (measured here: 2x faster than under FBGEMM's AVX2 kernels)
    assert isa_cap_environment("avx2")["FBGEMM_ENABLE_INSTRUCTIONS"] == "AVX2"


@pytest.mark.slow
def test_an_avx2_cap_is_recorded_and_takes_effect_in_torch():
    code = ("import json; from gemini_core.runtimes.cpu import isa_restriction; "
            "print(json.dumps(isa_restriction()))")
    capped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, **isa_cap_environment("avx2")})
    report = json.loads(capped.stdout.strip().splitlines()[-1])
    assert report["torch_cpu_capability"] == "AVX2" and report["torch_restricted_to_avx2"]
    assert report["variables"]["ONEDNN_MAX_CPU_ISA"] == "AVX2" and "MLAS" in report["onnxruntime"]
    assert report["fbgemm_capped"] == "AVX2"
    with pytest.raises(ValueError, match="unknown instruction-set cap"):
        isa_cap_environment("sse2")


@pytest.mark.parametrize("vnni", [False, True])
def test_openvino_int8_fixes_overflow_on_every_layer_only_without_vnni(monkeypatch, vnni):
    _needs("openvino")
    from gemini_core.runtimes import openvino_rt

    if openvino_rt.nncf_available():
        pytest.skip(openvino_rt.nncf_available())

    monkeypatch.setattr(openvino_rt, "onednn_int8_dot_product", lambda: vnni)
    calibration = [mlp_inputs(16, seed=s) for s in range(4)]
    int8 = build("openvino", mlp_model(), mlp_inputs(4), calibration, precision="int8", threads=1)
    assert ("overflow fix on every layer" in int8.calibration.method) is (not vnni)


def test_an_onednn_cap_below_vnni_turns_the_int8_dot_product_off(monkeypatch):
    from gemini_core.runtimes import cpu

    monkeypatch.setattr(cpu, "cpu_record", lambda: {"int8_dot_product": True})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not cpu.onednn_int8_dot_product()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert cpu.onednn_int8_dot_product()
