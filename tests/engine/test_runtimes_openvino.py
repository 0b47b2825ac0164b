"""OpenVINO: fp32 and bf16 match torch; NNCF int8 is calibrated, smaller and accurate (skips without openvino)."""
from __future__ import annotations

import pytest
import torch

from gemini_core.errors import ConfigError
from gemini_core.measure import classification_metrics
from gemini_core.runtimes.catalog import build
from gemini_core.runtimes.openvino_rt import nncf_available, openvino_available

from .runtime_models import TinyBert, bert_inputs, calibration_batches, cnn_model, logits, mlp_inputs, mlp_model

pytestmark = pytest.mark.skipif(openvino_available() is not None, reason=str(openvino_available()))


def test_fp32_matches_torch_on_mlp_cnn_and_bert_with_dynamic_shapes():
    cases = ((mlp_model(), mlp_inputs, ((1,), (9,))),
             (cnn_model(), lambda n: {"x": torch.rand(n, 1, 8, 8)}, ((1,), (33,))),
             (TinyBert(), bert_inputs, ((3, 16), (8, 24))))
    for model, make, shapes in cases:
        built = build("openvino", model, make(4), precision="fp32", threads=1)
        assert built.details["inference_precision"] == "f32"
        for shape in shapes:
            inputs = make(*shape)
            assert (built(inputs) - logits(model, inputs)).abs().max() < 1e-4


def test_bf16_hint_is_in_force_or_refused():
    model, inputs = TinyBert(), bert_inputs(4)
    try:
        built = build("openvino", model, inputs, precision="bf16", threads=1)
    except ConfigError as exc:
        assert "bf16" in str(exc)
        return
    assert built.details["inference_precision"] == "bf16"
    assert (built(inputs) - logits(model, inputs)).abs().max() < 0.05


@pytest.mark.skipif(nncf_available() is not None, reason=str(nncf_available()))
@pytest.mark.parametrize("precision", ["int8", "int8-peer"])
def test_nncf_int8_on_digits_is_calibrated_smaller_and_accurate(digits, precision):
    scenario, baseline = digits
    calibration = calibration_batches(scenario.splits.train, 64, 4)
    example = scenario.example_inputs(2)
    fp32 = build("openvino", baseline.model, example, precision="fp32")
    int8 = build("openvino", baseline.model, example, calibration, precision=precision)
    assert int8.calibration.examples == 256 and "nncf.quantize" in int8.calibration.method
    assert int8.size_bytes < 0.5 * fp32.size_bytes
    test = scenario.splits.test
    reference = classification_metrics(baseline.model, test, "cpu")["accuracy"]
    drop_pts = (reference - classification_metrics(int8, test, "cpu")["accuracy"]) * 100
    assert drop_pts <= 2.0, f"{precision}: NNCF int8 lost {drop_pts:.1f} points on digits"


def test_int8_without_calibration_is_refused():
    with pytest.raises(ConfigError, match="calibration batches"):
        build("openvino", mlp_model(), mlp_inputs(4), None, precision="int8")


@pytest.mark.skipif(nncf_available() is not None, reason=str(nncf_available()))
def test_int4_weights_store_4_bit_and_compute_close_to_fp32():
    model, inputs = TinyBert(), bert_inputs(6, 20, seed=3)
    fp32 = build("openvino", model, bert_inputs(4), precision="fp32", threads=1)
    int4 = build("openvino", model, bert_inputs(4), precision="int4-weights", threads=1)
    assert int4.calibration.method.startswith("none (data-free")
    # 4-bit codes + scales in the IR's weights file (its xml, the graph as text, is a fixed cost)
    assert int4.details["ir_weights_bytes"] < 0.25 * fp32.details["ir_weights_bytes"]
    reference = logits(model, inputs)
    assert (int4(inputs) - reference).abs().max() < 0.1 * reference.abs().max() + 0.05
