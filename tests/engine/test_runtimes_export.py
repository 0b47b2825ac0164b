"""Exports that keep their compression (ONNX int8 QDQ, ONNX MatMulNBits, OpenVINO IR) and standalone use."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gemini_core.compress import compress
from gemini_core.config import CompressionConfig
from gemini_core.errors import ConfigError
from gemini_core.runtimes.onnxruntime_rt import export_onnx, ort_available
from gemini_core.runtimes.openvino_rt import nncf_available, openvino_available

needs_ort = pytest.mark.skipif(ort_available() is not None, reason=str(ort_available()))
needs_ov = pytest.mark.skipif(openvino_available() is not None or nncf_available() is not None,
                              reason=str(openvino_available() or nncf_available()))
INT8 = CompressionConfig(bits=8, granularity="per-channel")
INT4 = CompressionConfig(bits=4, granularity="group-32")


@pytest.fixture(scope="module")
def breast_cancer():
    """(scenario, baseline) for the MLP on breast cancer (trained once per module, about a second)."""
    from gemini_core.scenarios import get_scenario
    from gemini_core.training.baseline import get_baseline

    scenario = get_scenario("breast-cancer")
    return scenario, get_baseline(scenario)


def _check(info: dict, size_ok: bool = True) -> None:
    assert info["accuracy_ok"], f"{info['format']}: {info['accuracy_delta_pts']:+.2f} pts (tolerance {info['tolerance_pts']})"
    if size_ok:
        assert info["size_ok"], f"{info['format']}: {info['size_ratio_vs_safetensors']:.2f}x the safetensors file"
    assert info["test_examples"] > 0 and info["reloaded_accuracy"] > 0.5


@needs_ort
def test_onnx_int4_matmulnbits_keeps_4_bit_weights_on_the_mlp(breast_cancer, tmp_path):
    from gemini_core.checkpoint.runtime_exports import write_onnx_nbits

    scenario, baseline = breast_cancer
    compressed = compress(baseline.model, INT4, scenario)
    info = write_onnx_nbits(compressed, scenario, tmp_path)
    assert info["gemm_rewritten"] == 3 and info["matmulnbits_nodes"] == 3  # every Linear runs MatMulNBits
    fp32_bytes = sum(p.numel() * 4 for p in compressed.stored_model.parameters())
    assert info["size_bytes"] < fp32_bytes / 3  # 4-bit codes, not a float graph
    _check(info, size_ok=False)  # a 20K-parameter MLP: graph overhead, not weights, decides the ratio


@needs_ort
def test_onnx_int8_qdq_export_reloads_within_tolerance(digits, tmp_path):
    from gemini_core.checkpoint.runtime_exports import write_onnx_int8

    scenario, baseline = digits
    compressed = compress(baseline.model, INT8, scenario)
    info = write_onnx_int8(compressed, scenario, tmp_path, calibration_batches=2)
    assert info["calibration"]["examples"] == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8.onnx"]  # no intermediate float graphs left
    assert info["size_ratio_vs_safetensors"] < 1.5  # int8 weights stored (a float graph is about 4x)
    _check(info, size_ok=False)


@needs_ort
def test_exports_refuse_other_bit_widths(digits, tmp_path):
    from gemini_core.checkpoint.runtime_exports import write_onnx_int8, write_onnx_nbits

    scenario, baseline = digits
    compressed = compress(baseline.model, CompressionConfig(bits=2), scenario)
    with pytest.raises(ConfigError, match="8-bit"):
        write_onnx_int8(compressed, scenario, tmp_path)
    with pytest.raises(ConfigError, match="4-bit"):
        write_onnx_nbits(compressed, scenario, tmp_path)


@needs_ov
@pytest.mark.parametrize("config", [INT8, INT4], ids=["int8", "int4-g32"])
def test_openvino_ir_keeps_compressed_weights(breast_cancer, tmp_path, config):
    from gemini_core.checkpoint.runtime_exports import write_openvino_ir

    scenario, baseline = breast_cancer
    compressed = compress(baseline.model, config, scenario)
    info = write_openvino_ir(compressed, scenario, tmp_path)
    assert (tmp_path / "model.xml").is_file() and (tmp_path / "model.bin").is_file()
    fp32_bytes = sum(p.numel() * 4 for p in compressed.stored_model.parameters())
    assert (tmp_path / "model.bin").stat().st_size < fp32_bytes / (3 if config.bits == 8 else 4)
    _check(info, size_ok=False)


@needs_ort
def test_matmul_nbits_weights_on_tiny_bert_are_within_115_percent_of_safetensors(tmp_path):
    """Every weight of a transformer (embeddings too) is stored at 4 bits in the ONNX file.

    The weights are compared, not the whole file: a 2-layer, 32-wide BERT's graph (124 nodes, about
    11 KB) is a fixed cost that weighs a third of this toy model and nothing on MiniLM (see the bench).
    """

    import onnx

    from gemini_core.checkpoint.runtime_exports import _nbits_quantizer, gemm_to_matmul
    from gemini_core.compress.codec import encode_state, to_bytes
    from gemini_core.runtimes.onnxruntime_rt import session, session_runner
    from gemini_core.techniques.quantize import quantize_weights_

    from .runtime_models import TinyBert, bert_inputs, logits

    stored = TinyBert()
    quantized = quantize_weights_(stored, 4, "group-32")
    safetensors_bytes = len(to_bytes(*encode_state(stored.state_dict(), quantized, 4)))
    graph = onnx.load(str(export_onnx(stored, bert_inputs(2), tmp_path / "fp32.onnx")))
    assert gemm_to_matmul(graph) == 2  # pooler and classifier
    quantizer = _nbits_quantizer(graph, 4, "group-32")
    quantizer.process()
    quantizer.model.save_model_to_file(str(tmp_path / "int4.onnx"), False)
    saved = onnx.load(str(tmp_path / "int4.onnx"))
    ops = [node.op_type for node in saved.graph.node]
    assert ops.count("MatMulNBits") == 14 and ops.count("GatherBlockQuantized") == 3
    weight_bytes = sum(len(init.SerializeToString()) for init in saved.graph.initializer)
    assert weight_bytes <= 1.15 * safetensors_bytes, f"{weight_bytes} vs safetensors {safetensors_bytes}"
    run = session_runner(session(tmp_path / "int4.onnx", 1))
    inputs = bert_inputs(4)
    assert (run(inputs) - logits(stored, inputs)).abs().max() < 0.05  # the same grid, scales in fp32


# -- standalone ------------------------------------------------------------------------------------------
def _run_without_torch(script: Path, *args: str) -> str:
    """Run ``script`` in a fresh interpreter where importing torch or gemini_core fails."""
    guard = ("import sys, runpy; sys.modules['torch'] = None; sys.modules['gemini_core'] = None; "
             f"sys.argv = {[str(script), *args]!r}; runpy.run_path({str(script)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-I", "-c", guard], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@needs_ort
def test_standalone_digits_export_reproduces_accuracy_from_raw_pixels(digits, tmp_path):
    from sklearn.datasets import load_digits

    from gemini_core.checkpoint.standalone import write_standalone
    from gemini_core.measure import classification_metrics
    from gemini_core.scenarios.base import stratified_split

    scenario, baseline = digits
    export_onnx(baseline.model, scenario.example_inputs(2), tmp_path / "model.onnx")
    info = write_standalone(tmp_path, scenario)
    assert info["requires"] == ["onnxruntime", "numpy"]
    data = load_digits()
    _, _, test = stratified_split(data.target.astype(np.int64))
    np.save(tmp_path / "raw.npy", data.images[test])  # raw 0..16 pixels, no scaling
    np.save(tmp_path / "labels.npy", data.target[test])
    result = json.loads(_run_without_torch(tmp_path / "predict.py", str(tmp_path / "raw.npy"),
                                           "--labels", str(tmp_path / "labels.npy")))
    expected = classification_metrics(baseline.model, scenario.splits.test, "cpu")["accuracy"]
    assert result["examples"] == len(test)
    assert result["accuracy"] == pytest.approx(expected, abs=1e-6)
    predictions = _run_without_torch(tmp_path / "predict.py", str(tmp_path / "raw.npy")).split()
    assert len(predictions) == len(test) and set(predictions) <= set(scenario.splits.class_names)


@needs_ort
def test_standalone_tabular_applies_the_training_standardisation(breast_cancer, tmp_path):
    from sklearn.datasets import load_breast_cancer

    from gemini_core.checkpoint.standalone import preprocessing, write_standalone
    from gemini_core.scenarios.base import stratified_split

    scenario, baseline = breast_cancer
    spec = preprocessing(scenario)
    data = load_breast_cancer()
    _, _, test = stratified_split(data.target.astype(np.int64))
    standardised = (data.data[test] - np.asarray(spec["mean"])) / np.asarray(spec["std"])
    assert np.allclose(standardised, scenario.splits.test.inputs["x"].numpy(), atol=1e-5)
    export_onnx(baseline.model, scenario.example_inputs(2), tmp_path / "model.onnx")
    write_standalone(tmp_path, scenario)
    np.save(tmp_path / "raw.npy", data.data[test])
    np.save(tmp_path / "labels.npy", data.target[test])
    result = json.loads(_run_without_torch(tmp_path / "predict.py", str(tmp_path / "raw.npy"),
                                           "--labels", str(tmp_path / "labels.npy")))
    from gemini_core.measure import classification_metrics

    assert result["accuracy"] == pytest.approx(
        classification_metrics(baseline.model, scenario.splits.test, "cpu")["accuracy"], abs=1e-6)


def test_standalone_refuses_scenarios_without_recorded_preprocessing():
    from gemini_core.checkpoint.standalone import preprocessing

    class Images:
        name, domain = "images", "vision"

    with pytest.raises(ConfigError, match="not supported yet"):
        preprocessing(Images())


@needs_ort
def test_standalone_text_tokenizes_raw_lines_like_the_scenario(tmp_path):
    """predict.py with tokenizer.json gives the same predictions as the scenario's own tokenization."""
    pytest.importorskip("tokenizers", reason="text standalone exports read tokenizer.json with `tokenizers`")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from gemini_core.checkpoint.standalone import write_standalone

    from .runtime_models import VOCAB, TinyBert, logits

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(VOCAB - 4)]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]")

    class TextStub:  # what write_standalone reads from a text scenario
        name, domain, max_length = "text", "text", 12

        class splits:
            class_names = ["ham", "spam"]

        def tokenizer(self):
            return fast

    texts = [" ".join(f"w{(i * 7 + j) % 290}" for j in range(3 + i % 15)) for i in range(20)]
    encoded = fast(texts, padding="max_length", truncation=True, max_length=12, return_tensors="pt")
    inputs = {"input_ids": encoded["input_ids"].long(), "attention_mask": encoded["attention_mask"].long()}
    model = TinyBert()
    export_onnx(model, inputs, tmp_path / "model.onnx")
    info = write_standalone(tmp_path, TextStub())
    assert "tokenizer/" in info["files"] and "tokenizers" in info["requires"]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    expected = [TextStub.splits.class_names[int(i)] for i in logits(model, inputs).argmax(-1)]
    assert _run_without_torch(tmp_path / "predict.py", str(tmp_path / "texts.txt")).split() == expected
    import importlib.util

    spec = importlib.util.spec_from_file_location("standalone_predict_copy", tmp_path / "predict.py")
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    stored = json.loads((tmp_path / "preprocess.json").read_text())["preprocess"]
    ids = loader.load_inputs(tmp_path / "texts.txt", stored)
    for name in ("input_ids", "attention_mask"):  # the very ids the scenario feeds, padding and truncation too
        assert np.array_equal(ids[name], inputs[name].numpy())
