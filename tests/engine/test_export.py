"""Exports: reload exactly, refuse tampered or unsafe files, write atomically, run in HF and ONNX Runtime."""
from __future__ import annotations

import errno
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gemini_core.checkpoint import archive
from gemini_core.checkpoint import format as ckformat
from gemini_core.checkpoint import hf as ckhf
from gemini_core.checkpoint import load as ckload
from gemini_core.compress import compress
from gemini_core.config import CompressionConfig
from gemini_core.errors import CheckpointError, GeminiError
from gemini_core.kinds.classifier.export import export_compressed
from gemini_core.measure import classification_metrics
from gemini_core.workflows import export as ex


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).float()


def _round_trip(scenario, baseline, config, out: Path, formats=("gemini",)):
    compressed = compress(baseline.model, config, scenario)
    path = export_compressed(compressed, scenario, baseline, out, formats=formats, measure=False)
    loaded = ckload.load_export(path)
    test = scenario.splits.test
    diff = (_logits(loaded.model, test.inputs) - _logits(compressed.model, test.inputs)).abs().max().item()
    assert diff <= 1e-5, f"{config.label()}: reloaded outputs differ by {diff}"
    recipe = json.loads((path / "recipe.json").read_text())
    assert classification_metrics(loaded.model, test, "cpu")["accuracy"] == recipe["record"]["accuracy"]
    size = (path / "model.safetensors").stat().st_size
    assert size == len(compressed.storage()) == recipe["size_bytes"] == recipe["record"]["size_bytes"]
    assert loaded.backend == compressed.backend
    return compressed, loaded, path, recipe


# -- CNN (digits) and MLP (breast cancer) ---------------------------------------------------------
CNN_CONFIGS = [
    CompressionConfig(bits=32),
    CompressionConfig(bits=16),
    CompressionConfig(bits=8),
    CompressionConfig(bits=4),
    CompressionConfig(bits=2),
    CompressionConfig(prune_method="l1-structured", prune_ratio=0.5, bits=4, granularity="per-channel"),
    CompressionConfig(prune_method="magnitude-unstructured", prune_ratio=0.8, bits=4, granularity="group-32"),
    CompressionConfig(prune_method="2:4", bits=8, execution="sparse"),
]


@pytest.mark.parametrize("config", CNN_CONFIGS, ids=lambda c: c.label().replace(" / ", "-").replace(" ", ""))
def test_cnn_round_trip(digits, tmp_path, config):
    scenario, baseline = digits
    compressed, loaded, path, recipe = _round_trip(scenario, baseline, config, tmp_path / "export")
    assert recipe["config"] == config.to_dict()
    assert recipe["scenario"]["arch"] == scenario.arch()
    assert recipe["scenario"]["data_fingerprint"] == scenario.fingerprint()
    assert recipe["baseline"]["key"] == baseline.key
    assert set(recipe["files"]) == {"model.safetensors", "README.md"}
    if config.is_structured:
        assert recipe["pruning"]["history"], "structured pruning must record its history"
        shapes = {k: tuple(v.shape) for k, v in loaded.stored_model.state_dict().items()}
        assert shapes == {k: tuple(v.shape) for k, v in compressed.stored_model.state_dict().items()}
    readme = (path / "README.md").read_text()
    assert config.label() in readme and "gemini_core.load" in readme


def test_mlp_round_trip_int8_kernels(tmp_path):
    from gemini_core.scenarios import get_scenario
    from gemini_core.scenarios.base import TrainSettings
    from gemini_core.training.baseline import get_baseline

    scenario = get_scenario("breast-cancer")
    baseline = get_baseline(scenario, TrainSettings(epochs=3, batch_size=32, lr=3e-3))  # a short baseline will do
    config = CompressionConfig(prune_method="l1-structured", prune_ratio=0.5, bits=8)
    compressed, loaded, _, _ = _round_trip(scenario, baseline, config, tmp_path / "mlp")
    assert "int8-dynamic" in loaded.backend
    # the reloaded module runs with gemini_core.load too, recipe attached
    model = ckload.load(tmp_path / "mlp")
    assert model.gemini_recipe["scenario"]["name"] == "breast-cancer"


# -- tiny BERT through the text scenario ------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    """(scenario, baseline) for a 2-layer BERT (hidden 32, 4 heads) on a small CSV; 3 training steps."""
    import csv
    import random

    from transformers import BertConfig, BertForSequenceClassification

    from gemini_core.scenarios import get_scenario
    from gemini_core.scenarios.base import TrainSettings
    from gemini_core.scenarios.hf_models import minilm_dir
    from gemini_core.training.baseline import get_baseline

    root = tmp_path_factory.mktemp("tiny_text")
    model_dir = root / "tinybert"
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=64)
    BertForSequenceClassification(config).save_pretrained(model_dir)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (minilm_dir() / name).exists():
            shutil.copy(minilm_dir() / name, model_dir / name)
    rng = random.Random(0)
    words = "good bad great awful fine poor lovely terrible nice horrible".split()
    with open(root / "reviews.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(60):
            writer.writerow([" ".join(rng.choice(words[i % 2::2]) for _ in range(6)), ["neg", "pos"][i % 2]])
    scenario = get_scenario(f"hf:{model_dir}", data=str(root / "reviews.csv"), max_length=16)
    baseline = get_baseline(scenario, TrainSettings(epochs=1, batch_size=16, lr=1e-3, max_steps=3))
    return scenario, baseline


def test_bert_structured_int8_round_trip_hf_and_onnx(tiny_text, tmp_path):
    import onnxruntime as ort
    from transformers import AutoModelForSequenceClassification

    scenario, baseline = tiny_text
    config = CompressionConfig(prune_method="l1-structured", prune_ratio=0.5, bits=8)
    compressed, loaded, path, recipe = _round_trip(scenario, baseline, config, tmp_path / "bert",
                                                   formats=("gemini", "hf", "onnx"))
    assert "int8-dynamic" in loaded.backend
    attention = loaded.stored_model.hf.bert.encoder.layer[0].attention.self
    assert attention.num_attention_heads == 2 and attention.query.out_features == 16
    assert (path / "tokenizer" / "tokenizer.json").exists()

    test = scenario.splits.test
    reference = _logits(compressed.stored_model, test.inputs)
    # hf/: plain transformers, no gemini code, dequantized weights
    hf = AutoModelForSequenceClassification.from_pretrained(path / "hf").eval()
    assert hf.config.intermediate_size == 32
    with torch.no_grad():
        hf_logits = hf(**test.inputs).logits
    assert torch.allclose(hf_logits, reference, atol=1e-5)
    # onnx/: dynamic batch and sequence, onnxruntime matches torch
    session = ort.InferenceSession(str(path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = {k: v[:5, :12].numpy() for k, v in test.inputs.items()}
    out = session.run(None, batch)[0]
    expected = _logits(compressed.stored_model, {k: torch.from_numpy(v) for k, v in batch.items()}).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert recipe["onnx"]["max_abs_diff_vs_torch"] <= 1e-4
    assert recipe["hf"]["max_abs_diff_vs_stored_model"] <= 1e-4

    moved = tmp_path / "moved.csv"  # the data moved: --data points the recipe's scenario at it
    shutil.copy(recipe["scenario"]["options"]["data"], moved)
    model_dir = recipe["scenario"]["name"][len("hf:"):]  # the user names the model folder (never the recipe)
    record = ex.evaluate_export(path, device="cpu", data_overrides={"data": str(moved), "model": model_dir})
    assert record["data_fingerprint_matches"]
    assert record["accuracy"] == recipe["record"]["accuracy"] and record["accuracy_matches_record"]
    assert record["size_bytes"] == recipe["size_bytes"] and record["reencoded_identical"]


def test_hf_format_refuses_uneven_ffn(tiny_text):
    scenario, baseline = tiny_text
    compressed = compress(baseline.model, CompressionConfig(prune_method="l1-structured", prune_ratio=0.5, bits=32),
                          scenario)
    layer = compressed.stored_model.hf.bert.encoder.layer[1]
    import torch_pruning as tp

    tp.prune_linear_out_channels(layer.intermediate.dense, idxs=[0, 1, 2, 3, 4, 5, 6, 7])
    tp.prune_linear_in_channels(layer.output.dense, idxs=[0, 1, 2, 3, 4, 5, 6, 7])
    with pytest.raises(GeminiError, match="same FFN width"):
        ckhf.hf_state_and_config(compressed.stored_model)


def test_hf_format_only_for_text_models(digits, tmp_path):
    scenario, baseline = digits
    compressed = compress(baseline.model, CompressionConfig(bits=8), scenario)
    with pytest.raises(GeminiError, match="format hf"):
        export_compressed(compressed, scenario, baseline, tmp_path / "x", formats=("hf",), measure=False)
    assert not (tmp_path / "x").exists()


# -- ONNX for the CNN ---------------------------------------------------------------------------
def test_cnn_onnx_dynamic_batch(digits, tmp_path):
    import onnxruntime as ort

    scenario, baseline = digits
    compressed = compress(baseline.model, CompressionConfig(prune_method="l1-structured", prune_ratio=0.5, bits=4),
                          scenario)
    path = export_compressed(compressed, scenario, baseline, tmp_path / "onnx", formats="onnx", measure=False,
                                onnx_int8=True)
    session = ort.InferenceSession(str(path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 7, 64):
        x = scenario.splits.test.inputs["x"][:n]
        out = session.run(None, {"x": x.numpy()})[0]
        np.testing.assert_allclose(out, _logits(compressed.stored_model, {"x": x}).numpy(), atol=1e-4)
    recipe = json.loads((path / "recipe.json").read_text())
    assert recipe["onnx"]["max_abs_diff_vs_torch"] <= 1e-4
    assert "onnx/model.int8.onnx" in recipe["files"] and recipe["onnx"]["int8"]["argmax_agreement"] > 0.8
    ckload.load(path)  # the checksums of the onnx files verify too


# -- safety -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_export(digits, tmp_path_factory):
    scenario, baseline = digits
    compressed = compress(baseline.model, CompressionConfig(bits=4), scenario)
    return export_compressed(compressed, scenario, baseline, tmp_path_factory.mktemp("ex") / "four",
                                measure=False)


def _copy(path: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(path, target)
    return target


@pytest.fixture
def no_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must never be called by the loader")

    monkeypatch.setattr(torch, "load", refuse)


def test_tampered_weights_refused(small_export, tmp_path, no_pickle):
    path = _copy(small_export, tmp_path)
    blob = bytearray((path / "model.safetensors").read_bytes())
    blob[-1] ^= 0x01
    (path / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="checksum mismatch for model.safetensors"):
        ckload.load(path)


def test_missing_file_refused(small_export, tmp_path, no_pickle):
    path = _copy(small_export, tmp_path)
    (path / "README.md").unlink()
    with pytest.raises(CheckpointError, match="README.md is missing"):
        ckload.load(path)
    (path / "recipe.json").unlink()
    with pytest.raises(CheckpointError, match="recipe.json is missing"):
        ckload.load(path)


def test_wrong_paths_refused(tmp_path, no_pickle):
    with pytest.raises(CheckpointError, match="no export"):
        ckload.load(tmp_path / "does-not-exist")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError):
        ckload.load(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="recipe.json is missing"):
        ckload.load(tmp_path)


def test_pickle_is_never_loaded(tmp_path, small_export, monkeypatch):
    folder = tmp_path / "pickled"
    folder.mkdir()
    torch.save({"weight": torch.zeros(2)}, folder / "model.pt")
    calls = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a))
    with pytest.raises(CheckpointError, match="pickle"):
        ckload.load(folder)
    with pytest.raises(CheckpointError, match="pickle"):
        ckload.load(folder / "model.pt")
    # a pickle lying beside a real export is ignored, not opened
    path = _copy(small_export, tmp_path)
    shutil.copy(folder / "model.pt", path / "model.pt")
    ckload.load(path)
    assert calls == []


def test_zip_round_trip(small_export, tmp_path, digits):
    blob = archive.zip_export(small_export)
    assert blob == archive.zip_export(small_export)  # same folder, same bytes
    (tmp_path / "four.zip").write_bytes(blob)
    scenario, _ = digits
    x = scenario.splits.test.inputs
    assert torch.equal(_logits(ckload.load(tmp_path / "four.zip"), x), _logits(ckload.load(small_export), x))


def test_a_zip_that_unpacks_too_big_is_refused_before_unpacking(small_export, tmp_path, monkeypatch):
    blob = archive.zip_export(small_export)
    (tmp_path / "big.zip").write_bytes(blob)
    unzipped = sum(i.file_size for i in zipfile.ZipFile(tmp_path / "big.zip").infolist())
    monkeypatch.setenv("GEMINI_MAX_EXPORT_BYTES", str(unzipped - 1))
    seen = []
    monkeypatch.setattr(zipfile.ZipFile, "extractall", lambda self, *a, **k: seen.append(a))
    with pytest.raises(CheckpointError, match=f"would unpack to {unzipped:,} bytes, above the limit"):
        ckload.load(tmp_path / "big.zip")
    assert seen == []                                         # nothing was written
    monkeypatch.setenv("GEMINI_MAX_EXPORT_BYTES", "lots")
    with pytest.raises(GeminiError, match="GEMINI_MAX_EXPORT_BYTES='lots' is not a whole number"):
        ckload.load(tmp_path / "big.zip")


# -- atomic writes ----------------------------------------------------------------------------------
def test_disk_full_leaves_nothing(digits, tmp_path, monkeypatch):
    scenario, baseline = digits
    compressed = compress(baseline.model, CompressionConfig(bits=8), scenario)
    parent = tmp_path / "exports"
    parent.mkdir()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckformat, "_write_json", full)  # the recipe is the last file written
    with pytest.raises(GeminiError, match="no space left"):
        export_compressed(compressed, scenario, baseline, parent / "new", measure=False)
    assert list(parent.iterdir()) == []
    # an existing export being overwritten survives a failed overwrite untouched
    monkeypatch.undo()
    old = export_compressed(compressed, scenario, baseline, parent / "old", measure=False)
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    monkeypatch.setattr(ckformat, "_write_bytes", full)
    with pytest.raises(GeminiError, match="no space left"):
        export_compressed(compressed, scenario, baseline, old, measure=False, overwrite=True)
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before
    assert [p.name for p in parent.iterdir()] == ["old"]


def test_existing_folder_needs_overwrite(digits, tmp_path):
    scenario, baseline = digits
    compressed = compress(baseline.model, CompressionConfig(bits=4), scenario)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(GeminiError, match="not empty"):
        export_compressed(compressed, scenario, baseline, out, measure=False)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(GeminiError, match="not an export written by gemini"):  # only our exports
        export_compressed(compressed, scenario, baseline, out, measure=False, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    export_compressed(compressed, scenario, baseline, out, measure=False)
    export_compressed(compressed, scenario, baseline, out, measure=False, overwrite=True)  # ours: replaced
    assert (out / "model.safetensors").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    export_compressed(compressed, scenario, baseline, empty, measure=False)  # an empty folder is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out"]


# -- from the store, and the CLI -------------------------------------------------------------------
def test_export_point_reproduces_the_sweep(digits, tmp_path):
    from gemini_core.kinds.classifier.spec import SweepSpec
    from gemini_core.results.store import Store
    from gemini_core.workflows.sweep import run_sweep

    scenario, baseline = digits
    store = Store(tmp_path / "runs.sqlite")
    spec = SweepSpec(prune_methods=("magnitude-unstructured",), prune_ratios=(0.5,), bits=(4,))
    points = list(run_sweep(scenario, spec, store=store, device="cpu",
                            latency_kwargs={"min_runs": 2, "min_seconds": 0.0}, baseline=baseline))
    point = next(p for p in points if p["config"]["bits"] == 4)
    path = ex.export_point(store, point["point_id"], tmp_path / "point", run_id=point["run_id"])
    recipe = json.loads((path / "recipe.json").read_text())
    assert recipe["source"]["reproduced_sweep"] is True
    assert recipe["record"]["accuracy"] == point["accuracy"]
    assert recipe["size_bytes"] == point["size_bytes"] == (path / "model.safetensors").stat().st_size
    record = ex.evaluate_export(path, device="cpu", batch_size=8)
    assert record["accuracy"] == point["accuracy"] and record["data_fingerprint_matches"]
    with pytest.raises(GeminiError, match="belongs to run"):
        ex.export_point(store, point["point_id"], tmp_path / "other", run_id="nope")


def test_cli_export_and_evaluate(digits, tmp_path, capsys):
    from gemini_core.cli import main

    out = tmp_path / "cli"
    code = main(["export", "--scenario", "digits", "--prune-method", "2:4", "--bits", "8", "--execution", "sparse",
                 "--batch-size", "8", "--out", str(out), "--zip"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["export"] == str(out.resolve()) and Path(summary["zip"]).exists()
    assert main(["evaluate", str(out), "--batch-size", "8", "--device", "cpu"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["accuracy"] == summary["accuracy"] and record["accuracy_matches_record"]
    assert record["size_bytes"] == summary["size_bytes"] and "sparse-csr" in record["backend"]
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "no export" in capsys.readouterr().err
    assert main(["export", "--scenario", "digits", "--out", str(out)]) == 2  # exists, no --overwrite
    assert main(["export", "--scenario", "digits", "--format", "tflite", "--out", str(tmp_path / "t")]) == 2
