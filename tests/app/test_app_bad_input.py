"""Bad input through the dashboard (AppTest): a message naming the problem, no traceback, the store unchanged.

Every case starts from a home holding an earlier 4-point run (the ``seeded`` fixture) and checks,
besides the message, that the store's content and the home's files are as they were (uploads/
excepted: an upload is saved there by design) and that the earlier run still has its 5 points (4 + the control).
"""
from __future__ import annotations

import codecs
import errno
import json
import shutil
import tomllib
from pathlib import Path

import pytest
import torch

from gemini_core.checkpoint import format as ckformat

try:
    from tests.app.test_app_support import (  # noqa: F401
        ROOT,
        SMALL_GRID,
        app_env,
        chart_by_title,
        new_app,
        point_count,
        seed_template,
        seeded,
        wait_job,
    )
    from tests.engine.test_bad_input_matrix import GOOD_CSV, ROWS, Payload, store_snapshot
except ImportError:  # pragma: no cover
    from test_app_support import (  # noqa: F401
        ROOT,
        SMALL_GRID,
        app_env,
        chart_by_title,
        new_app,
        point_count,
        seed_template,
        seeded,
        wait_job,
    )
    from test_bad_input_matrix import GOOD_CSV, ROWS, Payload, store_snapshot

MODEL, SWEEP, EXPORT = "pages/1_Model.py", "pages/2_Sweep.py", "pages/4_Export.py"


def snapshot(home: Path) -> dict:
    snap = store_snapshot(home)
    # uploads/ and ui_state.json (the dashboard's remembered choices) are the dashboard's own files, not lost work
    snap["files"] = [f for f in snap["files"] if not f.startswith("uploads/") and f != "ui_state.json"]
    return snap


def assert_unchanged(home: Path, before: dict, at) -> None:
    assert not at.exception, at.exception
    assert snapshot(home) == before
    from gemini_core.results.store import Store

    runs = Store().runs()
    assert [r["name"] for r in runs] == ["seeded"] and runs[0]["points_ok"] == 5  # 4 + the control


def errors(at) -> list[str]:
    return [e.value for e in at.error]


# -- data files: uploaded -------------------------------------------------------------------------------
UPLOADS = [  # (id, file name, bytes, words of the error)
    ("empty", "empty.csv", b"", "empty.csv is empty"),
    ("binary", "sheet.csv", b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 4, "looks binary"),
    ("utf16", "utf16.csv", codecs.BOM_UTF16_LE + GOOD_CSV.encode("utf-16-le"), "UTF-16/UTF-32 encoded"),
    ("wrong-encoding", "gbk.csv", ("text,label\n" + "电影很好看,好\n电影很无聊,坏\n" * 20).encode("gbk"),
     "is not UTF-8 text"),
    ("over-row-cap", "big.csv", ("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(200_001))).encode(),
     "has 200,001 data rows; the limit is 200,000 rows"),
    ("header-only", "header.csv", b"text,label\n", "has a header row but no data rows"),
    ("ragged", "ragged.csv", (GOOD_CSV + "a,b,c,d\n").encode(), "could not be read as comma-separated values"),
    ("escaping-name", "../../../etc/cron.d/x.csv", b"", "x.csv is empty"),
]


@pytest.mark.parametrize("name, blob, words", [u[1:] for u in UPLOADS], ids=[u[0] for u in UPLOADS])
def test_bad_upload_shows_the_problem(name, blob, words, seeded, app_env):
    before = snapshot(app_env)
    at = new_app(MODEL)
    at.selectbox(key="m_scenario").set_value("text").run()
    at.file_uploader(key="m_upload").set_value((name, blob, "text/csv")).run()
    assert any(words in e and e.startswith("Cannot read this file:") for e in errors(at)), errors(at)
    assert at.button(key="m_train").disabled and at.button(key="m_use").disabled
    saved = list((app_env / "uploads").iterdir())
    assert len(saved) == 1 and "/" not in saved[0].name and saved[0].read_bytes() == blob  # inside uploads/
    assert_unchanged(app_env, before, at)


def test_upload_cap_is_configured_and_stated():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == 200 and config["server"]["address"] == "127.0.0.1"
    from gemini_core.scenarios.table_read import MAX_FILE_BYTES, MAX_ROWS

    assert MAX_FILE_BYTES == 200 * 1024 * 1024 and MAX_ROWS == 200_000
    readme = (ROOT / "README.md").read_text()
    assert "--server.address 0.0.0.0" in readme and "no login" in readme


# -- data files: checked with chosen columns ---------------------------------------------------------------
CHECKS = [  # (id, csv text, text column, label column, words of the error)
    ("single-class", "text,label\n" + "".join(f"text {i},pos\n" for i in range(30)), "text", "label",
     "has a single class ('pos')"),
    ("nan-labels", GOOD_CSV + "no label,\nnor this,NaN\n", "text", "label",
     "label column 'label' is empty on 2 of 42 rows (data rows 41, 42; NaN and null count as empty)"),
    ("all-text-empty", "text,label\n" + "".join(f",{'pos' if i % 2 else 'neg'}\n" for i in range(30)), "text",
     "label", "is empty on every row"),
    ("same-column-twice", GOOD_CSV, "text", "text", "the text column and the label column are the same"),
    ("text-as-label", GOOD_CSV, "label", "text", "has 40 different values in 40 rows"),
]


def _upload_and_check(at, blob: bytes, text_col, label_col, name="data.csv"):
    at.selectbox(key="m_scenario").set_value("text").run()
    at.file_uploader(key="m_upload").set_value((name, blob, "text/csv")).run()
    assert not at.exception, at.exception
    at.selectbox(key="m_text_col").set_value(text_col)
    at.selectbox(key="m_label_col").set_value(label_col).run()
    at.button(key="m_validate").click().run()
    assert not at.exception, at.exception


@pytest.mark.parametrize("content, text_col, label_col, words", [c[1:] for c in CHECKS], ids=[c[0] for c in CHECKS])
def test_data_check_names_the_problem(content, text_col, label_col, words, seeded, app_env):
    before = snapshot(app_env)
    at = new_app(MODEL)
    _upload_and_check(at, content.encode(), text_col, label_col)
    assert any(e.startswith("The data cannot be used:") and words in e for e in errors(at)), errors(at)
    assert_unchanged(app_env, before, at)


def test_empty_and_100kb_texts_are_explained_not_refused(seeded, app_env):
    long_text = "word " * 20_480
    content = "text,label\n" + ROWS + ",pos\n  ,neg\n" + f"{long_text},pos\n"
    before = snapshot(app_env)
    at = new_app(MODEL)
    _upload_and_check(at, content.encode(), "text", "label")
    assert "41 usable rows" in at.success[0].value and "2 classes" in at.success[0].value
    captions = [c.value for c in at.caption]
    assert any("dropped 2 rows with empty text (data rows 41, 42)" in c for c in captions), captions
    assert any("1 texts are longer than 10,000 characters (longest 102,400" in c and "first max_length tokens" in c
               for c in captions), captions
    assert not at.button(key="m_train").disabled
    assert_unchanged(app_env, before, at)


def test_typed_path_that_does_not_exist(seeded, app_env, tmp_path):
    before = snapshot(app_env)
    at = new_app(MODEL)
    at.selectbox(key="m_scenario").set_value("tabular").run()
    at.text_input(key="m_data_path").set_value(str(tmp_path / "nope.csv")).run()
    assert any("does not exist" in e for e in errors(at)) and at.button(key="m_train").disabled
    assert_unchanged(app_env, before, at)


# -- model folders ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from gemini_core.scenarios.hf_models import minilm_dir

    root = tmp_path_factory.mktemp("ui_models")
    good = root / "good"
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    tokenizer.save_pretrained(good)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        vocab_size=tokenizer.vocab_size, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(good)
    for name, drop in (("no_config", "config.json"), ("no_weights", "model.safetensors"),
                       ("pickled", "model.safetensors"), ("remote", None)):
        shutil.copytree(good, root / name)
        if drop:
            (root / name / drop).unlink()
    cfg = json.loads((root / "remote" / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    (root / "remote" / "config.json").write_text(json.dumps(cfg))
    marker = root / "PAYLOAD_RAN"
    Payload.marker = str(marker)
    torch.save({"bert.embeddings.word_embeddings.weight": Payload()}, root / "pickled" / "pytorch_model.bin")
    return root, marker


MODEL_CASES = [
    ("missing-dir", "missing", "does not exist"),
    ("no-config", "no_config", "has no config.json"),
    ("no-weights", "no_weights", "has no weights"),
    ("remote-code", "remote", "model asks to run its own code (auto_map); refused"),
]


@pytest.mark.parametrize("folder, words", [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES])
def test_model_folder_problems_are_named(folder, words, model_dirs, seeded, app_env, monkeypatch):
    root, _ = model_dirs
    monkeypatch.setenv("GEMINI_DATA_ROOTS", str(root))  # the model folders live outside the home
    before = snapshot(app_env)
    at = new_app(MODEL)
    at.selectbox(key="m_scenario").set_value("hf").run()
    at.text_input(key="m_hf_source").set_value(str(root / folder))
    at.file_uploader(key="m_upload").set_value(("d.csv", GOOD_CSV.encode(), "text/csv")).run()
    assert any(e.startswith("This model cannot be set up:") and words in e for e in errors(at)), errors(at)
    assert at.button(key="m_train").disabled
    assert_unchanged(app_env, before, at)


def test_pickled_weights_are_refused_when_training(model_dirs, seeded, app_env, monkeypatch):
    root, marker = model_dirs
    monkeypatch.setenv("GEMINI_DATA_ROOTS", str(root))  # the model folders live outside the home
    before = snapshot(app_env)
    at = new_app(MODEL)
    at.selectbox(key="m_scenario").set_value("hf").run()
    at.text_input(key="m_hf_source").set_value(str(root / "pickled"))
    at.file_uploader(key="m_upload").set_value(("d.csv", GOOD_CSV.encode(), "text/csv")).run()
    assert not errors(at) and not at.button(key="m_train").disabled   # config and a weights file are there
    at.button(key="m_train").click().run()
    job = wait_job(at, "train", timeout=120)
    assert job.state == "failed" and job.error_detail is None        # a user error, not a bug with a traceback
    assert any("pickle holding Python objects besides tensors; refused" in e for e in errors(at)), errors(at)
    assert not marker.exists()
    assert_unchanged(app_env, before, at)                              # no baseline, no run


# -- sweep settings ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, words", [
    ("sw_methods", "no prune methods chosen"), ("sw_ratios", "no prune ratios chosen"), ("sw_bits", "no bits chosen"),
    ("sw_gran", "no granularities chosen"), ("sw_exec", "no executions chosen"),
    ("sw_ft", "no finetune steps chosen"),
])
def test_empty_grid_cannot_start(key, words, seeded, app_env):
    before = snapshot(app_env)
    at = new_app(SWEEP)
    at.multiselect(key=key).set_value([]).run()
    assert any(e.startswith("This grid cannot run:") and words in e for e in errors(at)), errors(at)
    assert at.button(key="sw_start").disabled
    assert_unchanged(app_env, before, at)


def test_values_outside_the_widgets_never_reach_the_engine(seeded, app_env):
    """Ratios above 0.95, bits outside the set and batch 0 cannot be chosen; forced into the session, they are dropped."""
    from gemini_core.config import BITS, MAX_PRUNE_RATIO

    before = snapshot(app_env)
    at = new_app(SWEEP)
    assert max(at.multiselect(key="sw_ratios").options, key=float) == str(MAX_PRUNE_RATIO)
    assert sorted(int(b) for b in at.multiselect(key="sw_bits").options) == sorted(BITS)
    at.number_input(key="sw_batch").set_value(0).run()
    assert at.number_input(key="sw_batch").value == 1                  # clamped by the widget's minimum
    at.session_state["sw_ratios"] = [1.2]
    at.session_state["sw_bits"] = [1]
    at.run()
    assert at.multiselect(key="sw_ratios").value == [] and at.multiselect(key="sw_bits").value == []
    assert any("no prune ratios chosen" in e for e in errors(at)) and at.button(key="sw_start").disabled
    assert_unchanged(app_env, before, at)


# -- out of memory during a sweep started from the page ------------------------------------------------------
def test_out_of_memory_point_shows_its_reason_and_the_page_keeps_working(seeded, app_env, monkeypatch):
    from gemini_core import measure as measure_module
    from gemini_core.kinds.classifier import units as sweep_module

    original = measure_module.measure_point

    def eight_bit_runs_out(compressed, scenario, batch_size=32, **kwargs):
        if compressed.config.bits == 8:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {batch_size * 64} MiB")
        return original(compressed, scenario, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(sweep_module, "measure_point", eight_bit_runs_out)
    at = new_app(SWEEP)
    for key, value in {**SMALL_GRID, "sw_ft": [0]}.items():
        at.multiselect(key=key).set_value(value)
    at.number_input(key="sw_batch").set_value(48).run()
    at.button(key="sw_start").click().run()
    job = wait_job(at, "sweep", timeout=180)
    assert job.state == "done", job.snapshot()
    failed = [r for r in job.records if r["status"] == "failed"]
    assert len(job.records) == 4 and len(failed) == 2
    warning = " ".join(w.value for w in at.warning)
    assert "2 point(s) failed and were skipped" in warning and "out of memory at batch size 48" in warning
    assert point_count(chart_by_title(at, "Accuracy vs latency")) == 2     # the measured ones are drawn
    at.multiselect(key="sw_bits").set_value([32]).run()                    # the page goes on working
    assert not at.exception and "**2 points**" in at.info[0].value
    at.switch_page("pages/3_History.py").run()
    assert not at.exception
    from gemini_core.results.store import Store

    run = Store().get_run(job.run_id)
    assert run["points_failed"] == 2 and run["points_ok"] == 2 and run["status"] == "finished"
    assert Store().get_run(seeded[0]["run_id"])["points_ok"] == 5


# -- a reload during a sweep -------------------------------------------------------------------------------------
def test_reload_during_a_sweep_reattaches_and_sees_its_points(app_env):
    at = new_app(SWEEP)
    for key, value in SMALL_GRID.items():
        at.multiselect(key=key).set_value(value)
    at.run()
    at.button(key="sw_start").click().run()
    job = wait_job(at, "sweep", timeout=180, until=lambda j: len(j.records) >= 1)
    reloaded = new_app(SWEEP)                                         # a new browser session: empty session_state
    assert reloaded.session_state["sweep_job_id"] == job.id
    assert reloaded.button(key="sw_start").disabled and not reloaded.button(key="sw_cancel").disabled
    job.join(180)
    reloaded.run()
    assert job.state == "done" and len(job.records) == 5  # 4 + the control
    assert "finished, 5 points" in reloaded.success[0].value
    assert point_count(chart_by_title(reloaded, "Accuracy vs latency")) == 5
    assert len(reloaded.dataframe[0].value) == 5


# -- export folder and disk full from the Export page ------------------------------------------------------
def _export_page(seeded_records):
    point = next(r for r in seeded_records if r["config"]["bits"] == 8)
    at = new_app()
    at.session_state["selected_point_id"] = point["point_id"]
    at.switch_page(EXPORT).run()
    assert not at.exception, at.exception
    return at, point


@pytest.mark.parametrize("typed, words", [
    ("../escape", "leads to"), ("../../tmp/x", "leads to"), ("/etc", "leads to /etc"), ("..", "leads to"),
    (".", "is the folder itself"), ("~/x", "leads to"), ("link-out/x", "leads to"),
])
def test_export_folder_outside_the_home_is_refused(typed, words, seeded, app_env, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (app_env / "exports").mkdir(exist_ok=True)
    (app_env / "exports" / "link-out").symlink_to(outside, target_is_directory=True)
    before = snapshot(app_env)
    at, _ = _export_page(seeded)
    at.text_input(key="x_folder").set_value(typed).run()
    assert any(e.startswith("This folder cannot be used:") and words in e and "must be a folder inside" in e
               for e in errors(at)), errors(at)
    assert at.button(key="x_export").disabled                          # a browser cannot press it
    assert list(outside.iterdir()) == [] and not (app_env / "escape").exists()
    assert_unchanged(app_env, before, at)


def test_export_folder_inside_exports_is_used(seeded, app_env):
    at, point = _export_page(seeded)
    at.text_input(key="x_folder").set_value("best-int8").run()
    assert not errors(at) and not at.button(key="x_export").disabled
    at.button(key="x_export").click().run()
    job = wait_job(at, "export", timeout=180)
    assert job.state == "done", job.snapshot()
    assert job.result["path"] == str(app_env / "exports" / "best-int8")
    assert (app_env / "exports" / "best-int8" / "model.safetensors").exists()


def test_disk_full_while_exporting_from_the_page(seeded, app_env, monkeypatch):

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckformat, "_write_bytes", full)
    before = snapshot(app_env)
    at, point = _export_page(seeded)
    at.button(key="x_export").click().run()
    job = wait_job(at, "export", timeout=180)
    assert job.state == "failed" and "no space left on device while saving the export" in job.error
    assert any("failed:" in e and "no space left on device while saving the export" in e for e in errors(at)), errors(at)
    exports = app_env / "exports"
    assert not exports.exists() or list(exports.iterdir()) == []      # no half-written folder
    assert_unchanged(app_env, before, at)


# -- typed paths on the Model page: where they may lead ---------------------------------------------------
def test_typed_paths_stay_inside_the_data_roots(seeded, app_env, tmp_path, monkeypatch):
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    (allowed / "ok.csv").write_text(GOOD_CSV)
    (other / "secret.csv").write_text(GOOD_CSV)
    (allowed / "link.csv").symlink_to(other / "secret.csv")
    monkeypatch.setenv("GEMINI_DATA_ROOTS", str(allowed))
    before = snapshot(app_env)
    at = new_app(MODEL)
    at.selectbox(key="m_scenario").set_value("text").run()
    at.text_input(key="m_data_path").set_value(str(allowed / "ok.csv")).run()
    assert not errors(at) and list(at.dataframe[0].value.columns) == ["text", "label"]
    for typed in (str(other / "secret.csv"), str(allowed / ".." / "other" / "secret.csv"), str(allowed / "link.csv"),
                  "/etc/passwd"):
        at.text_input(key="m_data_path").set_value(typed).run()
        assert any(e.startswith("This path cannot be used:") and "outside the folders this dashboard may read" in e
                   for e in errors(at)), (typed, errors(at))
        assert not at.dataframe and at.button(key="m_train").disabled   # nothing of the file is shown
    at.selectbox(key="m_scenario").set_value("images").run()
    at.text_input(key="m_images_path").set_value(str(other)).run()
    assert any("outside the folders" in e for e in errors(at)) and at.button(key="m_train").disabled
    at.selectbox(key="m_scenario").set_value("hf").run()
    at.text_input(key="m_hf_source").set_value(str(other)).run()
    assert any("model directory" in e and "outside the folders" in e for e in errors(at))
    assert_unchanged(app_env, before, at)


def test_typed_paths_outside_the_home_are_refused_without_data_roots(seeded, app_env, tmp_path, monkeypatch):
    monkeypatch.delenv("GEMINI_DATA_ROOTS", raising=False)
    (tmp_path / "mine.csv").write_text(GOOD_CSV)
    inside = app_env / "data" / "mine.csv"
    inside.parent.mkdir(parents=True)
    inside.write_text(GOOD_CSV)
    before = snapshot(app_env)
    at = new_app(MODEL)
    at.selectbox(key="m_scenario").set_value("text").run()
    at.text_input(key="m_data_path").set_value(str(tmp_path / "mine.csv")).run()
    assert any("outside the folders this dashboard may read" in e and "GEMINI_DATA_ROOTS" in e
               for e in errors(at)), errors(at)
    assert not at.dataframe
    at.text_input(key="m_data_path").set_value(str(inside)).run()        # inside the home folder: fine
    assert not errors(at) and list(at.dataframe[0].value.columns) == ["text", "label"]
    at.text_input(key="m_data_path").set_value("")
    at.file_uploader(key="m_upload").set_value(("mine.csv", GOOD_CSV.encode(), "text/csv")).run()
    assert not errors(at) and list(at.dataframe[0].value.columns) == ["text", "label"]   # uploads still work
    assert_unchanged(app_env, before, at)
