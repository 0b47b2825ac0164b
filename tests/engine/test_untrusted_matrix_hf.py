"""Untrusted input, class 3 for Hugging Face model folders: config.json and the weights' header are checked
before allocation, with or without the meta-device build.

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from gemini_core.cli import main

try:
    from tests.engine.untrusted_support import run_cli
except ImportError:  # pragma: no cover
    from untrusted_support import run_cli


# == 3. caps before allocation: Hugging Face model folders ===================================================
@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from gemini_core.scenarios.hf_models import minilm_dir

    folder = tmp_path_factory.mktemp("untrusted_bert") / "model"
    AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True).save_pretrained(folder)
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=64, vocab_size=30522, max_position_embeddings=64,
                                             num_labels=2)).save_pretrained(folder)
    return folder


HF_CONFIG_CASES = [
    ("hidden-mismatch", {"hidden_size": 64}, "hidden_size is 64 but model.safetensors holds"),
    ("hidden-65536", {"hidden_size": 65536, "intermediate_size": 262144, "num_attention_heads": 1},
     "parameters (estimate), above the limit"),
    ("layers-100k", {"num_hidden_layers": 100_000}, "num_hidden_layers is 100000; it must be a whole number"),
    ("layers-2000-estimate", {"num_hidden_layers": 2000, "hidden_size": 4096, "num_attention_heads": 1},
     "parameters (estimate), above the limit"),
    ("vocab-0", {"vocab_size": 0}, "vocab_size is 0"),
    ("hidden-negative", {"hidden_size": -32}, "hidden_size is -32"),
    ("hidden-string", {"hidden_size": "wide"}, "hidden_size"),
]


@pytest.mark.parametrize("case_id, update, message", HF_CONFIG_CASES, ids=[c[0] for c in HF_CONFIG_CASES])
def test_hf_config_checked_before_allocation(case_id, update, message, tiny_bert_dir, home, d, tmp_path,
                                             monkeypatch, capsys):
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **update}))
    argv = ["train", "--scenario", f"hf:{folder}", "--data", str(d / "good.csv"), "--epochs", "1", "--max-steps", "1"]
    line = run_cli(argv, home[0], monkeypatch, capsys, home[1])
    assert message in line, line


def _no_meta_build(monkeypatch):
    """Make the meta-device build fail as it does for a model whose constructor calls ``.item()``."""
    from gemini_core.scenarios import registry, text

    def unbuildable():
        raise RuntimeError("Tensor.item() cannot be called on meta tensors")

    calls = []

    def check(build, what):
        calls.append(what)
        return registry.check_param_count(unbuildable, what)

    monkeypatch.setattr(text, "check_param_count", check)
    return calls


# The guard must not depend on the meta build: the config is checked against the header's shapes and
# the header's parameter count, with the meta build failing like a constructor that calls .item().
NO_META_CASES = [
    ("hidden-mismatch", {"hidden_size": 64}, {}, "hidden_size is 64 but model.safetensors holds"),
    ("vocab-mismatch", {"vocab_size": 1000}, {}, "vocab_size is 1,000 but model.safetensors holds"),
    ("ffn-mismatch", {"intermediate_size": 128}, {}, "intermediate_size is 128 but model.safetensors holds"),
    ("layers-mismatch", {"num_hidden_layers": 3}, {}, "num_hidden_layers is 3 but model.safetensors holds 2 layers"),
    ("header-over-cap", "extra", {"GEMINI_MAX_PARAMS": "2000000"}, "parameters in the header, above the limit of 2,000,000"),
]


@pytest.mark.parametrize("case_id, update, env, message", NO_META_CASES, ids=[c[0] for c in NO_META_CASES])
def test_hf_guard_without_the_meta_build(case_id, update, env, message, tiny_bert_dir, home, d, tmp_path,
                                         monkeypatch, capsys):
    from safetensors.torch import load_file, save_file

    calls = _no_meta_build(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    if update == "extra":  # a config that estimates small, weights that hold 3M parameters more
        tensors = load_file(folder / "model.safetensors")
        save_file({**tensors, "extra.weight": torch.zeros(3000, 1000)}, folder / "model.safetensors")
    else:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **update}))
    argv = ["train", "--scenario", f"hf:{folder}", "--data", str(d / "good.csv"), "--epochs", "1", "--max-steps", "1"]
    line = run_cli(argv, home[0], monkeypatch, capsys, home[1])
    assert message in line, line
    assert calls == []  # refused before even the meta build was tried


def test_hf_model_without_a_meta_build_still_trains(tiny_bert_dir, home, d, tmp_path, monkeypatch, capsys):
    """The control: an honest folder whose meta build fails passes the header checks and trains."""
    calls = _no_meta_build(monkeypatch)
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "own_home"))
    argv = ["train", "--scenario", f"hf:{folder}", "--data", str(d / "good.csv"), "--epochs", "1", "--max-steps", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    assert calls, "the meta build was not even tried"


def test_hf_truncated_safetensors_is_one_line(tiny_bert_dir, home, d, tmp_path, monkeypatch, capsys):
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    blob = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(blob[:1000])
    argv = ["train", "--scenario", f"hf:{folder}", "--data", str(d / "good.csv"), "--epochs", "1", "--max-steps", "1"]
    line = run_cli(argv, home[0], monkeypatch, capsys, home[1])
    assert "damaged or truncated" in line, line
