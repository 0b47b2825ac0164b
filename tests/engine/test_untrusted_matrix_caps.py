"""Untrusted input, class 3: sizes are capped before anything is allocated (classifier exports, zips, data, batch sizes).

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from gemini_core.cli import main

try:
    from tests.engine.untrusted_support import folder_variant, listed, recipe_variant, run_cli
except ImportError:  # pragma: no cover
    from untrusted_support import folder_variant, listed, recipe_variant, run_cli


# == 3. caps before allocation =================================================================================
def _mlp(in_features, hidden):
    def edit(recipe):
        recipe["scenario"]["arch"] = {"scenario": "digits", "model": "MLP", "in_features": in_features,
                                      "num_classes": 10, "hidden": hidden}
    return edit


def _hf_arch(**config):
    def edit(recipe):
        base = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 64}
        recipe["scenario"]["arch"] = {"scenario": "digits", "model": "hf", "source": "x", "num_labels": 10,
                                      "config": {**base, **config}}
    return edit


CAP_CASES = [
    ("mlp-65536-squared", _mlp(65536, 65536), {}, "parameters, above the limit of 500,000,000"),
    ("mlp-over-schema", _mlp(100000, 100000), {}, "field scenario.arch.in_features"),
    ("bert-hidden-65536", _hf_arch(hidden_size=65536, intermediate_size=65536, num_attention_heads=1),
     {}, "parameters (estimate), above the limit of 500,000,000"),
    ("bert-layers-1000", _hf_arch(num_hidden_layers=1000), {}, "field scenario.arch.config.num_hidden_layers"),
    ("bert-vocab-0", _hf_arch(vocab_size=0), {}, "field scenario.arch.config.vocab_size"),
    ("bert-hidden-string", _hf_arch(hidden_size="huge"), {}, "field scenario.arch.config.hidden_size"),
    ("digits-over-env-cap", None, {"GEMINI_MAX_PARAMS": "1000"}, "above the limit of 1,000 (GEMINI_MAX_PARAMS"),
    ("cap-env-not-a-number", None, {"GEMINI_MAX_PARAMS": "lots"}, "GEMINI_MAX_PARAMS='lots' is not a whole number"),
    ("zip-members-env-cap", "many.zip", {"GEMINI_MAX_EXPORT_MEMBERS": "10"}, "holds 41 files, above the limit of 10"),
    ("zip-member-bytes-cap", "good.zip", {"GEMINI_MAX_EXPORT_MEMBER_BYTES": "100"}, "above the limit of 100"),
    ("zip-total-bytes-cap", "good.zip", {"GEMINI_MAX_EXPORT_BYTES": "100"}, "above the limit of 100"),
    ("zip-bomb-ratio", "bomb.zip", {}, "a zip bomb, refused"),
]


@pytest.mark.parametrize("case_id, edit, env, message", CAP_CASES, ids=[c[0] for c in CAP_CASES])
def test_caps_before_allocation(case_id, edit, env, message, home, export_dir, d, tmp_path, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if isinstance(edit, str):
        target = d / edit
    else:
        target = export_dir if edit is None else recipe_variant(export_dir, tmp_path, edit)
    line = run_cli(["evaluate", str(target), "--device", "cpu"], home[0], monkeypatch, capsys, home[1])
    assert message in line, line


def _arch_set(**values):
    def edit(recipe):
        recipe["scenario"]["arch"].update(values)
    return edit


def _mlp_on_cnn_weights(recipe):
    recipe["scenario"]["arch"] = {"scenario": "digits", "model": "MLP", "in_features": 64, "num_classes": 10,
                                  "hidden": 128}


# A gemini export whose recipe sizes do not describe its weights: compared with the safetensors header
# before any module is built (the build is watched and must never happen).
EXPORT_SHAPE_CASES = [
    ("classes-12", _arch_set(num_classes=12), "field scenario.arch.num_classes does not fit model.safetensors"),
    ("width-mult-16", _arch_set(width_mult=16), "field scenario.arch.width_mult does not fit model.safetensors"),
    ("width-mult-64", _arch_set(width_mult=64), "field scenario.arch.width_mult does not fit model.safetensors"),
    ("in-channels-3", _arch_set(in_channels=3), "field scenario.arch.in_channels does not fit model.safetensors"),
    ("mlp-on-cnn-weights", _mlp_on_cnn_weights, "the file holds classifier.1.bias, which the recipe's architecture"),
    ("header-over-cap", {"GEMINI_MAX_PARAMS": "50000"}, "parameters in the header, above the limit of 50,000"),
]


@pytest.mark.parametrize("case_id, edit, message", EXPORT_SHAPE_CASES, ids=[c[0] for c in EXPORT_SHAPE_CASES])
def test_export_recipe_sizes_against_the_header(case_id, edit, message, home, export_dir, tmp_path, monkeypatch,
                                                capsys):
    from gemini_core.checkpoint import load as load_module

    built = []
    real = load_module.build_architecture
    monkeypatch.setattr(load_module, "build_architecture", lambda arch: built.append(arch) or real(arch))
    if isinstance(edit, dict):
        for name, value in edit.items():
            monkeypatch.setenv(name, value)
        target = export_dir
    else:
        target = recipe_variant(export_dir, tmp_path, edit)
    line = run_cli(["evaluate", str(target), "--device", "cpu"], home[0], monkeypatch, capsys, home[1])
    assert message in line, line
    assert built == []  # refused from the header, before the architecture was built


DATA_CAPS = [
    ("npz-huge-header", ["sweep", "--scenario", "images", "--data", "{d}/huge_shape.npz"], "would need"),
    ("image-30000-squared", ["sweep", "--scenario", "images", "--data", "{d}/bomb_images"],
     "big.png has more pixels than Pillow opens safely, above the limit of 50,000,000 pixels per image"),
    ("export-batch-size-huge", ["export", "--out", "{d}/cap_out", "--batch-size", "50000000"],
     "--batch-size 50000000 is above the limit"),
    ("train-batch-size-huge", ["train", "--train-batch-size", "50000000"], "--train-batch-size 50000000"),
]


@pytest.mark.parametrize("case_id, argv, message", DATA_CAPS, ids=[c[0] for c in DATA_CAPS])
def test_data_caps(case_id, argv, message, home, d, monkeypatch, capsys):
    line = run_cli([a.format(d=d) for a in argv], home[0], monkeypatch, capsys, home[1])
    assert message in line, line


def test_evaluate_unpacks_a_zip_once(home, d, tmp_path, monkeypatch, capsys):
    """A zipped export is checked and unpacked once (with the archive's caps) and that folder is reused."""
    extractions = []
    real = zipfile.ZipFile.extractall
    monkeypatch.setattr(zipfile.ZipFile, "extractall", lambda self, *a, **k: extractions.append(1) or real(self, *a, **k))
    monkeypatch.setenv("GEMINI_HOME", str(home[0]))
    assert main(["evaluate", str(d / "good.zip"), "--device", "cpu"]) == 0, capsys.readouterr().err
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert extractions == [1]
    assert record["export"] == str((d / "good.zip").resolve()) and record["reencoded_identical"] is True


# A table's size is capped before pandas parses it: its first record's field count (a CSV of 10^6 columns took
# minutes and 6.9 GB before it crashed), the cells that many columns allow, and the rows (pandas is told to
# stop just past the cap, so it never holds more).
def _wide(path: Path, columns: int, rows: int = 3) -> Path:
    with open(path, "w") as handle:
        handle.write(",".join(f"c{i}" for i in range(columns)) + "\n")
        line = ",".join("1" for _ in range(columns)) + "\n"
        for _ in range(rows):
            handle.write(line)
    return path


def _quoted_wide(path: Path, columns: int) -> Path:
    """A first field that runs onto the next line: the first physical line shows one column, the record many."""
    path.write_text('"a\nb",' + ",".join(f"c{i}" for i in range(columns - 1)) + "\n"
                    + ",".join("1" for _ in range(columns)) + "\n")
    return path


def _long(path: Path, rows: int, columns: int = 3, sep: str = ",") -> Path:
    header = sep.join(["label", *(f"f{i}" for i in range(columns - 1))])
    path.write_text(header + "\n" + "".join(sep.join([str(r % 2), *(str(r + i) for i in range(columns - 1))]) + "\n"
                                            for r in range(rows)))
    return path


TABLE_CAPS = [
    ("csv-a-million-columns", lambda d: _wide(d / "wide.csv", 1_000_000), {}, "tabular",
     "wide.csv has 1,000,000 columns; the limit is 10,000", None),
    ("csv-20001-columns", lambda d: _wide(d / "wide.csv", 20_001), {}, "tabular",
     "wide.csv has 20,001 columns; the limit is 10,000", None),
    ("tsv-columns-env-cap", lambda d: _long(d / "t.tsv", 40, 12, "\t"), {"GEMINI_MAX_DATA_COLUMNS": "10"}, "text",
     "t.tsv has 12 columns; the limit is 10 (GEMINI_MAX_DATA_COLUMNS", None),
    ("csv-cells-env-cap", lambda d: _long(d / "c.csv", 200, 20), {"GEMINI_MAX_DATA_CELLS": "1000"}, "tabular",
     "c.csv has more than 1,000 cells", 53),
    ("csv-rows-env-cap", lambda d: _long(d / "r.csv", 200), {"GEMINI_MAX_DATA_ROWS": "50"}, "tabular",
     "r.csv has more than 50 data rows; the limit is 50", 53),
    ("csv-quoted-newline-in-the-first-record", lambda d: _quoted_wide(d / "q.csv", 20_001), {}, "tabular",
     "q.csv has 20,001 columns; the limit is 10,000", None),
    ("columns-cap-not-a-number", lambda d: _long(d / "n.csv", 40), {"GEMINI_MAX_DATA_COLUMNS": "wide"}, "tabular",
     "GEMINI_MAX_DATA_COLUMNS='wide' is not a whole number", None),
]


@pytest.mark.parametrize("case_id, make, env, scenario, message, max_rows_parsed", TABLE_CAPS,
                         ids=[c[0] for c in TABLE_CAPS])
def test_table_caps_before_parsing(case_id, make, env, scenario, message, max_rows_parsed, home, tmp_path,
                                   monkeypatch, capsys):
    import pandas as pd

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = make(tmp_path)
    parsed = []
    real = pd.read_csv
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: parsed.append(k.get("nrows")) or real(*a, **k))
    line = run_cli(["sweep", "--scenario", scenario, "--data", str(path)], home[0], monkeypatch, capsys, home[1])
    assert message in line, line
    if max_rows_parsed is None:
        assert parsed == []  # refused from the first line, before pandas saw the file
    else:
        assert parsed and all(n is not None and n <= max_rows_parsed for n in parsed), parsed


# == 3b. sizes of an export's own files: checked with stat before a byte is read ==============================
JSON_CAP = "above the limit of 67,108,864 bytes for a JSON file of an export"


def _grown(rel, size, relist):
    """``rel`` grown to ``size`` bytes (a sparse file: its JSON then zeros); with ``relist`` its recipe entry holds
    the new checksum and size (a sender can do that), so only a size cap can refuse it."""
    def edit(folder, recipe):
        os.truncate(folder / rel, size)
        if relist:
            recipe["files"][rel] = listed(folder, rel)
    return edit


def _nested(depth):
    def edit(recipe):
        recipe.setdefault("record", {})["notes"] = json.loads("[" * depth + "]" * depth)
    return edit


EXPORT_CAP_CASES = [
    # (id, which export, edit(folder, recipe) or recipe edit, message)
    ("llm-config-json-100mb-listed", "llm", _grown("model/config.json", 100 << 20, True),
     f"model/config.json is 104,857,600 bytes, {JSON_CAP}"),
    ("llm-tokenizer-json-2gb", "llm", _grown("model/tokenizer.json", 2 << 30, False),
     f"model/tokenizer.json is 2,147,483,648 bytes, {JSON_CAP}"),
    ("llm-compressed-config-100mb-listed", "llm", _grown("compressed/config.json", 100 << 20, True),
     f"compressed/config.json is 104,857,600 bytes, {JSON_CAP}"),
    ("llm-gguf-size-differs-from-listed", "llm", _grown("model.gguf", 2 << 30, False),
     "checksum mismatch for model.gguf: the file was changed or damaged after export (2,147,483,648 bytes"),
    ("classifier-listed-json-100mb", "classifier",
     lambda f, r: ((f / "extra.json").write_text("{}"), _grown("extra.json", 100 << 20, True)(f, r)),
     f"extra.json is 104,857,600 bytes, {JSON_CAP}"),
    ("classifier-nested-900", "classifier", lambda f, r: _nested(900)(r), "recipe.json is nested too deeply"),
    ("llm-nested-900", "llm", lambda f, r: _nested(900)(r), "recipe.json is nested too deeply"),
    ("classifier-nested-100", "classifier", lambda f, r: _nested(100)(r), "recipe.json is nested too deeply"),
]


@pytest.mark.parametrize("case_id, kind, edit, message", EXPORT_CAP_CASES, ids=[c[0] for c in EXPORT_CAP_CASES])
def test_export_files_are_capped_before_they_are_read(case_id, kind, edit, message, home, export_dir, llm_export_dir,
                                                      tmp_path, monkeypatch, capsys, llm_never_loaded):
    folder = folder_variant(llm_export_dir if kind == "llm" else export_dir, tmp_path, edit)
    big_reads = []
    real_text, real_bytes = Path.read_text, Path.read_bytes
    def watch(real):
        def read(self, *a, **k):
            if self.is_file() and self.stat().st_size > 64 << 20:
                big_reads.append(self.name)
            return real(self, *a, **k)
        return read
    monkeypatch.setattr(Path, "read_text", watch(real_text))
    monkeypatch.setattr(Path, "read_bytes", watch(real_bytes))
    line = run_cli(["evaluate", str(folder), "--device", "cpu"], home[0], monkeypatch, capsys, home[1])
    assert message in line, line
    assert big_reads == []


@pytest.mark.parametrize("kind", ["classifier", "llm"])
def test_a_2gb_recipe_is_refused_from_its_size(kind, home, export_dir, llm_export_dir, tmp_path, monkeypatch, capsys):
    """A 2 GB recipe.json (sparse: its JSON, then zeros) is refused from stat, before it is read, folder or zip."""
    import shutil

    folder = shutil.copytree(llm_export_dir if kind == "llm" else export_dir, tmp_path / "big")
    os.truncate(folder / "recipe.json", 2 << 30)
    loads = []
    monkeypatch.setattr(json, "loads", lambda text, *a, **k: loads.append(len(text)) or json.JSONDecoder().decode(text))
    line = run_cli(["evaluate", str(folder), "--device", "cpu"], home[0], monkeypatch, capsys, home[1])
    assert "recipe.json is 2,147,483,648 bytes, above the limit of 67,108,864" in line, line
    assert all(n < 64 << 20 for n in loads)
