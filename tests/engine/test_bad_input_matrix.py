"""Bad input through the CLI and the engine: a message naming the problem, the store unchanged, nothing lost.

One home folder per module holds the digits baseline and an earlier run (3 points). Every case
of the table runs the real CLI entry point (``gemini_core.cli:main``, in process) and asserts:
exit status 2 and one line naming the problem; the SQLite store's content (a hash of its dump and
its row counts) and the home folder's file list unchanged; the earlier run's points still there.
"""
from __future__ import annotations

import codecs
import hashlib
import json
import os
import shutil
import sqlite3
import zipfile
from pathlib import Path

import pytest
import torch

from gemini_core.checkpoint import format as ckformat
from gemini_core.cli import main
from gemini_core.errors import ConfigError, GeminiError

FAST = {"min_runs": 3, "min_seconds": 0.0}
ROWS = "".join(f"a fine film number {i},pos\na dull film number {i},neg\n" for i in range(20))
GOOD_CSV = "text,label\n" + ROWS


# -- what "unchanged" means -------------------------------------------------------------------------
def store_snapshot(home: Path) -> dict:
    """Content of the store (hash of its SQL dump, row counts) and every file under the home folder.

    The WAL side files are left out of the file list: SQLite may create them on any read.
    """
    db_path = home / "gemini.sqlite"
    dump_hash, counts = None, None
    if db_path.exists():
        with sqlite3.connect(db_path) as db:
            dump_hash = hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()
            counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "points")}
    files = sorted(str(p.relative_to(home)) for p in home.rglob("*")
                   if p.is_file() and not p.name.endswith(("-wal", "-shm")))
    return {"dump_sha256": dump_hash, "rows": counts, "files": files}


def earlier_points(home: Path, run_id: str) -> list[tuple]:
    with sqlite3.connect(home / "gemini.sqlite") as db:
        return db.execute("SELECT point_id, point_key, status, record_json FROM points WHERE run_id=? "
                          "ORDER BY point_id", (run_id,)).fetchall()


# -- fixtures: a home with an earlier run, and the files of the matrix --------------------------------
@pytest.fixture(scope="module")
def seeded_home(tmp_path_factory, digits):
    from gemini_core.kinds.classifier.spec import SweepSpec
    from gemini_core.results.store import Store
    from gemini_core.workflows.sweep import run_sweep

    scenario, baseline = digits
    home = tmp_path_factory.mktemp("bad_input_home")
    shutil.copytree(baseline.path, home / "baselines" / baseline.path.name)
    records = list(run_sweep(scenario, SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.5,),
                                                           bits=(32, 8), batch_size=4),
                             store=Store(home / "gemini.sqlite"), latency_kwargs=FAST, name="earlier run", baseline=baseline))
    assert len(records) == 3 and all(r["status"] == "ok" for r in records)
    return home, records[0]["run_id"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer BERT (hidden 32) with MiniLM's tokenizer, saved as safetensors."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from gemini_core.scenarios.hf_models import minilm_dir

    folder = tmp_path_factory.mktemp("tiny_bert") / "model"
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        vocab_size=tokenizer.vocab_size, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


class Payload:
    """Unpickling this runs a shell command (what a hostile pytorch_model.bin does)."""

    marker: str = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_bert, digits):
    """Every bad file of the matrix, made once. Returns (folder, marker file a pickle payload would create)."""
    from gemini_core.compress import compress
    from gemini_core.config import CompressionConfig
    from gemini_core.kinds.classifier.export import export_compressed

    d = tmp_path_factory.mktemp("bad_files")
    (d / "good.csv").write_text(GOOD_CSV)
    (d / "empty.csv").write_bytes(b"")
    (d / "blank.csv").write_text("\n\n  \n")
    (d / "binary.csv").write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 4)  # an .xlsx renamed
    (d / "utf16.csv").write_bytes(codecs.BOM_UTF16_LE + GOOD_CSV.encode("utf-16-le"))
    (d / "gbk.csv").write_bytes(("text,label\n" + "".join(f"电影很好看 {i},好\n电影很无聊 {i},坏\n" for i in range(20)))
                                .encode("gbk"))
    with open(d / "huge_bytes.csv", "wb") as f:  # sparse: 201 MiB on paper, nothing on disk
        f.write(b"text,label\n")
        f.truncate(201 * 1024 * 1024)
    (d / "huge_rows.csv").write_text("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(200_001)))
    (d / "header_only.csv").write_text("text,label\n")
    (d / "single_class.csv").write_text("text,label\n" + "".join(f"text {i},pos\n" for i in range(30)))
    (d / "nan_labels.csv").write_text(GOOD_CSV + "no label here,\nnor here,NaN\n")
    (d / "all_empty_text.csv").write_text("text,label\n" + "".join(f",{'pos' if i % 2 else 'neg'}\n" for i in range(30)))
    (d / "ragged.csv").write_text(GOOD_CSV + "one,two,three,four\n")
    (d / "one_column.csv").write_text("label\n" + "".join(f"{i % 2}\n" for i in range(30)))
    # model folders
    for name, drop, update in (("no_config", "config.json", None), ("no_weights", "model.safetensors", None),
                               ("remote_code", None, {"auto_map": {"AutoModelForSequenceClassification":
                                                                   "modeling_evil.EvilModel"}})):
        folder = shutil.copytree(tiny_bert, d / name)
        if drop:
            (folder / drop).unlink()
        if update:
            config = json.loads((folder / "config.json").read_text())
            (folder / "config.json").write_text(json.dumps({**config, **update}))
    pickled = shutil.copytree(tiny_bert, d / "pickled")
    (pickled / "model.safetensors").unlink()
    marker = d / "PAYLOAD_RAN"
    Payload.marker = str(marker)
    torch.save({"bert.embeddings.word_embeddings.weight": Payload()}, pickled / "pytorch_model.bin")
    torch.save({"weight": Payload()}, d / "model.pt")
    # exports: a good one tampered with, and a zip that climbs out of its folder
    scenario, baseline = digits
    export = export_compressed(compress(baseline.model, CompressionConfig(bits=8), scenario), scenario, baseline,
                                  d / "tampered_export", measure=False)
    blob = bytearray((export / "model.safetensors").read_bytes())
    blob[-1] ^= 0x01
    (export / "model.safetensors").write_bytes(bytes(blob))
    with zipfile.ZipFile(d / "evil.zip", "w") as archive:
        archive.writestr("x/recipe.json", "{}")
        archive.writestr("../../outside.txt", "gotcha")
    (d / "not_empty").mkdir()
    (d / "not_empty" / "keep.txt").write_text("mine")
    return d, marker


def text(name, *extra):
    return lambda d: ["sweep", "--scenario", "text", "--data", str(d / name), *extra]


def hf(model, *extra):
    return lambda d: ["sweep", "--scenario", f"hf:{d / model}", "--data", str(d / "good.csv"), "--epochs", "1",
                      "--max-steps", "1", *extra]


def sweep(*flags):
    return lambda d: ["sweep", "--batch-size", "4", *flags]


# (case id, argv from the files folder, the words the one-line message must contain)
CASES = [
    # data files
    ("missing-file", text("nope.csv"), "does not exist"),
    ("empty-file", text("empty.csv"), "empty.csv is empty"),
    ("blank-lines-only", text("blank.csv"), "blank.csv is empty"),
    ("binary-file", text("binary.csv"), "looks binary"),
    ("utf16-file", text("utf16.csv"), "UTF-16/UTF-32 encoded; save it as UTF-8"),
    ("wrong-encoding", text("gbk.csv"), "is not UTF-8 text"),
    ("over-byte-cap", text("huge_bytes.csv"), "huge_bytes.csv is 201 MB; the limit is 200 MB"),
    ("over-row-cap", text("huge_rows.csv"), "has 200,001 data rows; the limit is 200,000 rows"),
    ("header-without-rows", text("header_only.csv"), "has a header row but no data rows"),
    ("misspelled-label-column", text("good.csv", "--label-column", "lable"), "Did you mean 'label'?"),
    ("misspelled-text-column", text("good.csv", "--text-column", "txet"), "text column 'txet' not found"),
    ("label-column-out-of-range", text("good.csv", "--label-column", "7"), "label column '7' not found"),
    ("single-class", text("single_class.csv"), "has a single class ('pos')"),
    ("nan-labels", text("nan_labels.csv", "--label-column", "label"), "label column 'label' is empty on 2 of 42 rows (data rows 41, 42; NaN and null count as empty)"),
    ("all-text-empty", text("all_empty_text.csv", "--text-column", "text", "--label-column", "label"),
     "is empty on every row"),
    ("ragged-rows", text("ragged.csv"), "could not be read as comma-separated values"),
    ("tabular-single-column", lambda d: ["sweep", "--scenario", "tabular", "--data", str(d / "one_column.csv")],
     "has a single column"),
    ("tabular-binary", lambda d: ["sweep", "--scenario", "tabular", "--data", str(d / "binary.csv")], "looks binary"),
    # model folders and checkpoints
    ("model-dir-missing", hf("no_such_model"), "does not exist"),
    ("model-dir-no-config", hf("no_config"), "has no config.json"),
    ("model-dir-no-weights", hf("no_weights"), "has no weights"),
    ("model-remote-code", hf("remote_code"), "model asks to run its own code (auto_map); refused"),
    ("model-pickle-weights", hf("pickled"), "are a pickle holding Python objects besides tensors; refused"),
    ("checkpoint-pickle-file", lambda d: ["evaluate", str(d / "model.pt")], "is a pickle file"),
    ("export-tampered", lambda d: ["evaluate", str(d / "tampered_export")], "checksum mismatch for model.safetensors"),
    ("export-zip-escapes", lambda d: ["evaluate", str(d / "evil.zip")], "unsafe entry '../../outside.txt'"),
    ("export-into-non-empty-folder", lambda d: ["export", "--out", str(d / "not_empty")], "exists and is not empty"),
    ("export-unknown-point", lambda d: ["export", "--point", "999999", "--out", str(d / "p999")], "no point 999999"),
    # sweep settings
    ("ratio-above-0.95", sweep("--prune-method", "l1-structured", "--prune-ratios", "0.5,0.96"),
     "prune ratio 0.96 is outside [0, 0.95]"),
    ("ratio-negative", sweep("--prune-method", "l1-structured", "--prune-ratios=-0.1"),
     "prune ratio -0.1 is outside [0, 0.95]"),
    ("ratio-not-a-number", sweep("--prune-method", "l1-structured", "--prune-ratios", "half"),
     "prune ratios: 'half' is not a valid float"),
    ("bits-1", sweep("--bits", "32,1"), "bits 1 not supported"),
    ("bits-5", sweep("--bits", "5"), "bits 5 not supported"),
    ("bits-64", sweep("--bits", "64"), "bits 64 not supported"),
    ("unknown-method", sweep("--prune-method", "l3-structured"), "unknown prune method 'l3-structured'"),
    ("unknown-granularity", sweep("--bits", "4", "--granularity", "group-7"), "unknown granularity 'group-7'"),
    ("unknown-execution", sweep("--execution", "gpu"), "unknown execution 'gpu'"),
    ("empty-bits", sweep("--bits", ""), "empty list for bits"),
    ("empty-ratios", sweep("--prune-ratios", " , "), "empty list for prune ratios"),
    ("empty-methods", sweep("--prune-method", ","), "empty list for prune methods"),
    ("batch-size-0", lambda d: ["sweep", "--batch-size", "0"], "batch size 0 must be a whole number of at least 1"),
    ("batch-size-negative", lambda d: ["sweep", "--batch-size=-8"], "batch size -8"),
    ("negative-finetune-steps", sweep("--prune-method", "l1-structured", "--prune-ratios", "0.5",
                                      "--finetune-steps=-5"), "fine-tune steps -5 must be 0 or more"),
    ("out-folder-missing", lambda d: ["sweep", "--out", str(d / "nowhere" / "points.jsonl")], "does not exist"),
]


@pytest.mark.parametrize("case_id, argv, message", CASES, ids=[c[0] for c in CASES])
def test_cli_bad_input_matrix(case_id, argv, message, seeded_home, files, monkeypatch, capsys):
    home, run_id = seeded_home
    folder, marker = files
    monkeypatch.setenv("GEMINI_HOME", str(home))
    before, points_before = store_snapshot(home), earlier_points(home, run_id)
    assert main(argv(folder)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert message in err[0], err[0]
    assert store_snapshot(home) == before                          # store content and home files as they were
    assert earlier_points(home, run_id) == points_before and len(points_before) == 3
    assert not marker.exists()                                     # no pickle payload ever ran
    assert not (folder.parent / "outside.txt").exists() and (folder / "not_empty" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("name, value, message", [
    ("GEMINI_MAX_BATCH_BYTES", "lots", "GEMINI_MAX_BATCH_BYTES='lots' is not a number of bytes"),
    ("GEMINI_MAX_BATCH_BYTES", "0", "must be at least 1 byte"),
    ("GEMINI_MAX_DATA_ROWS", "-3", "GEMINI_MAX_DATA_ROWS='-3' must be at least 1"),
])
def test_bad_limit_settings_are_one_line_errors(name, value, message, seeded_home, files, monkeypatch, capsys):
    home, run_id = seeded_home
    folder, _ = files
    monkeypatch.setenv("GEMINI_HOME", str(home))
    monkeypatch.setenv(name, value)
    before = store_snapshot(home)
    argv = ["sweep", "--scenario", "text", "--data", str(folder / "good.csv")] if "DATA" in name else \
        ["sweep", "--batch-size", "4"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert store_snapshot(home) == before


# -- defined behaviour for awkward but usable text ------------------------------------------------------
def test_empty_text_rows_are_dropped_and_counted(tmp_path):
    from gemini_core.scenarios.table_data import validate_text_file

    path = tmp_path / "gaps.csv"
    path.write_text("text,label\n" + ROWS + ",pos\n   ,neg\n")
    summary = validate_text_file(path, "text", "label")
    assert summary["rows"] == 40
    assert any("dropped 2 rows with empty text (data rows 41, 42)" in n for n in summary["notes"])


def test_100kb_cells_are_kept_and_truncated_by_the_tokenizer(tmp_path):
    from gemini_core.scenarios.table_data import validate_text_file
    from gemini_core.scenarios.text import TextScenario

    long_text = "word " * 20_480  # 100 KiB
    path = tmp_path / "long.csv"
    path.write_text("text,label\n" + ROWS + f"{long_text},pos\n{long_text},neg\n")
    summary = validate_text_file(path, "text", "label")
    assert summary["rows"] == 42 and summary["text_chars_max"] == len(long_text) == 102_400
    assert any("2 texts are longer than 10,000 characters (longest 102,400" in n and "first max_length tokens" in n
               for n in summary["notes"])
    scenario = TextScenario(data=str(path), text_column="text", label_column="label", max_length=16)
    splits = scenario.splits
    ids = torch.cat([splits.train.inputs["input_ids"], splits.val.inputs["input_ids"], splits.test.inputs["input_ids"]])
    assert ids.shape == (42, 16)                                   # every text cut to max_length tokens
    assert any("texts fill all 16 tokens; longer ones were truncated" in n for n in scenario.notes)


def test_row_cap_counts_data_rows_not_the_header(tmp_path):
    from gemini_core.scenarios.table_read import read_table

    path = tmp_path / "capped.csv"
    path.write_text("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(50)))
    assert len(read_table(path, row_limit=50).frame) == 50
    with pytest.raises(GeminiError, match="has 50 data rows; the limit is 49 rows"):
        read_table(path, row_limit=49)


# -- export paths from the dashboard -------------------------------------------------------------------
def test_export_destination_stays_inside_the_exports_folder(tmp_path, monkeypatch):
    from gemini_core.paths import export_destination, exports_dir

    home = tmp_path / "home"
    monkeypatch.setenv("GEMINI_HOME", str(home))
    exports = exports_dir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (exports / "link-out").symlink_to(outside, target_is_directory=True)
    (exports / "link-in").symlink_to(exports / "real", target_is_directory=True)
    assert export_destination("point-7") == exports / "point-7"
    assert export_destination("  team/best  ") == exports / "team" / "best"
    assert export_destination(str(exports / "abs")) == exports / "abs"
    assert export_destination("../exports/again") == exports / "again"
    assert export_destination("link-in/x") == exports / "real" / "x"
    refused = {
        "../escape": f"leads to {home / 'escape'}",
        "a/../../escape": f"leads to {home / 'escape'}",
        "../gemini.sqlite": "leads to",
        "..": "leads to",
        ".": "is the folder itself",
        str(exports): "is the folder itself",
        "/etc": "leads to /etc",
        str(tmp_path / "elsewhere"): "leads to",
        "~/exports": "leads to",
        "link-out": f"leads to {outside}",
        "link-out/deeper": f"leads to {outside / 'deeper'}",
        "": "is empty",
        "a\x00b": "NUL character",
    }
    for text_, words in refused.items():
        with pytest.raises(ConfigError) as caught:
            export_destination(text_)
        assert words in str(caught.value), (text_, str(caught.value))
    assert sorted(p.name for p in exports.iterdir()) == ["link-in", "link-out"]   # nothing was created
    assert list(outside.iterdir()) == []


# -- disk full during an export from the store ------------------------------------------------------------
def test_disk_full_while_exporting_a_stored_point(seeded_home, monkeypatch):
    import errno

    from gemini_core.paths import exports_dir
    from gemini_core.results.store import Store
    from gemini_core.workflows import export as ex

    home, run_id = seeded_home
    monkeypatch.setenv("GEMINI_HOME", str(home))
    point = earlier_points(home, run_id)[-1]
    exports = exports_dir()
    before = store_snapshot(home)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckformat, "_write_bytes", full)
    with pytest.raises(GeminiError, match="no space left on device while saving the export"):
        ex.export_point(Store(), point[0], exports / "full", overwrite=True)
    assert list(exports.iterdir()) == []                           # no half-written folder, no temp folder
    assert store_snapshot(home) == before


def test_readable_paths_stay_inside_their_roots(tmp_path):
    from gemini_core.paths import resolve_readable

    root, other = tmp_path / "root", tmp_path / "other"
    (root / "sub").mkdir(parents=True)
    other.mkdir()
    (root / "sub" / "a.csv").write_text("x")
    (root / "out.csv").symlink_to(other / "b.csv")
    assert resolve_readable(root / "sub" / "a.csv", [root]) == root / "sub" / "a.csv"
    assert resolve_readable(root, [root]) == root
    for path in (other / "b.csv", root / ".." / "other" / "b.csv", root / "out.csv", "/etc/passwd", tmp_path):
        with pytest.raises(ConfigError, match="outside the folders this dashboard may read"):
            resolve_readable(path, [root])


@pytest.mark.parametrize("max_steps", [1, 2, 10])
def test_short_trainings_keep_a_valid_lr_schedule(max_steps, monkeypatch, tmp_path):
    """`--epochs 1 --max-steps 10` crashed OneCycleLR with a ZeroDivisionError (one warm-up step)."""
    from gemini_core.scenarios import TrainSettings, get_scenario
    from gemini_core.training.loop import train_model

    scenario = get_scenario("digits")
    model = scenario.build_model()
    history = train_model(model, scenario, TrainSettings(epochs=1, batch_size=32, lr=1e-3, max_steps=max_steps))
    epochs = [h for h in history if h["event"] == "epoch"]
    assert len(epochs) == 1 and epochs[0]["step"] == max_steps and epochs[0]["lr"] >= 0
    assert history[-1]["event"] == "chosen" and history[-1]["stopped"] == "step limit reached"
    from gemini_core.training.schedules import OneCycle  # adaptive training's one-cycle policy had the same flaw

    policy = OneCycle(1e-3, max_steps - 1 if max_steps > 1 else 1)
    for _ in range(max_steps):
        policy.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
