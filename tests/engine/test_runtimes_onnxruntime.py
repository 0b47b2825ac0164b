"""ONNX Runtime: fp32 matches torch on CNN / MLP / BERT with dynamic shapes; static int8 is calibrated and accurate."""
from __future__ import annotations

import pytest
import torch

from gemini_core.errors import ConfigError
from gemini_core.measure import classification_metrics
from gemini_core.runtimes.catalog import build
from gemini_core.runtimes.onnxruntime_rt import ort_available

from .runtime_models import TinyBert, bert_inputs, calibration_batches, cnn_model, logits, mlp_inputs, mlp_model

pytestmark = pytest.mark.skipif(ort_available() is not None, reason=str(ort_available()))


def test_fp32_mlp_and_cnn_match_torch_at_other_batch_sizes():
    for model, make in ((mlp_model(), mlp_inputs), (cnn_model(), lambda n: {"x": torch.rand(n, 1, 8, 8)})):
        built = build("onnxruntime", model, make(4), precision="fp32", threads=1)
        for batch in (1, 7, 64):  # the graph's batch dimension is dynamic
            inputs = make(batch)
            assert (built(inputs) - logits(model, inputs)).abs().max() < 1e-4
        assert built.calibration.method == "none" and built.size_bytes > 0


def test_fp32_bert_matches_torch_at_other_sequence_lengths():
    model = TinyBert()
    built = build("onnxruntime", model, bert_inputs(4), precision="fp32", threads=2)
    for batch, sequence in ((3, 16), (8, 24), (1, 9)):
        inputs = bert_inputs(batch, sequence, seed=batch)
        assert (built(inputs) - logits(model, inputs)).abs().max() < 1e-4
    assert built.threads == 2 and built.details["onnxruntime"]


def test_int8_needs_calibration():
    with pytest.raises(ConfigError, match="calibration batches"):
        build("onnxruntime", mlp_model(), mlp_inputs(4), calibration=None, precision="int8")


@pytest.mark.parametrize("precision", ["int8", "int8-peer"])
def test_static_int8_on_digits_is_calibrated_smaller_and_accurate(digits, precision):
    scenario, baseline = digits
    calibration = calibration_batches(scenario.splits.train, 64, 4)
    example = scenario.example_inputs(2)
    fp32 = build("onnxruntime", baseline.model, example, precision="fp32")
    int8 = build("onnxruntime", baseline.model, example, calibration, precision=precision)
    assert int8.calibration.examples == 256 and int8.calibration.batches == 4
    assert "QDQ static" in int8.calibration.method
    assert int8.size_bytes < 0.5 * fp32.size_bytes  # int8 weights are stored, not float ones
    test = scenario.splits.test
    reference = classification_metrics(baseline.model, test, "cpu")["accuracy"]
    assert classification_metrics(fp32, test, "cpu")["accuracy"] == pytest.approx(reference, abs=1e-9)
    drop_pts = (reference - classification_metrics(int8, test, "cpu")["accuracy"]) * 100
    assert drop_pts <= 2.0, f"{precision}: static int8 lost {drop_pts:.1f} points on digits"


def test_static_int8_bert_runs_stays_close_and_leaves_no_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ORT's shape inference can write temp files into the working directory
    model = TinyBert()
    calibration = [bert_inputs(8, seed=s) for s in range(4)]
    built = build("onnxruntime", model, bert_inputs(4), calibration, precision="int8")
    assert list(tmp_path.iterdir()) == []
    assert built.details["notes"] == ["quant_pre_process with skip_symbolic_shape=True"]
    inputs = bert_inputs(6, 20, seed=9)
    reference = logits(model, inputs)
    assert (built(inputs) - reference).abs().max() < 0.1 * reference.abs().max() + 0.05


def test_dynamic_int8_needs_no_calibration_is_smaller_and_accurate(digits):
    scenario, baseline = digits
    example = scenario.example_inputs(2)
    fp32 = build("onnxruntime", baseline.model, example, precision="fp32")
    int8 = build("onnxruntime", baseline.model, example, calibration=None, precision="int8-dynamic")
    assert int8.calibration.examples == 0 and "dynamic int8" in int8.calibration.method
    assert int8.size_bytes < 0.5 * fp32.size_bytes
    test = scenario.splits.test
    drop_pts = (classification_metrics(baseline.model, test, "cpu")["accuracy"]
                - classification_metrics(int8, test, "cpu")["accuracy"]) * 100
    assert drop_pts <= 2.0, f"dynamic int8 lost {drop_pts:.1f} points on digits"
    bert = TinyBert()
    built = build("onnxruntime", bert, bert_inputs(4), precision="int8-dynamic")
    inputs = bert_inputs(6, 20, seed=9)
    reference = logits(bert, inputs)
    assert (built(inputs) - reference).abs().max() < 0.1 * reference.abs().max() + 0.05
