"""The point record (results.record) and the store's versions (results.store): typed records, the upgrade of
a store written by the previous release, a newer store refused, a read-only store read without writing."""
from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
from pathlib import Path

import pytest

from gemini_core.cli import main
from gemini_core.errors import GeminiError
from gemini_core.results import record as record_module
from gemini_core.results.record import SCHEMA_VERSION, PointRecord, legacy_kind, point_json, upgrade_record
from gemini_core.results.store import STORE_VERSION, Store

NAN, INF = float("nan"), float("inf")

# The store's tables as the previous release (store version 1) created them, verbatim: no meta table,
# no runs.kind.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scenario TEXT NOT NULL,
    baseline_key TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    baseline_json TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'running',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS points (
    point_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    baseline_key TEXT NOT NULL,
    point_key TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    record_json TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (run_id, point_key)
);
CREATE INDEX IF NOT EXISTS points_by_baseline ON points (baseline_key, point_key);
CREATE TABLE IF NOT EXISTS analyses (
    analysis_id TEXT PRIMARY KEY,
    baseline_key TEXT NOT NULL,
    scenario TEXT NOT NULL,
    params_json TEXT NOT NULL,
    result_json TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS analyses_by_baseline ON analyses (baseline_key, updated_at);
"""

# A classifier record as measure_point and run_unit wrote it (no kind), with the NaNs a real record can hold.
CLASSIFIER = {
    "scenario": "digits", "config": {"prune_method": "none", "prune_ratio": 0.0, "finetune_steps": 0, "bits": 8,
                                     "granularity": "per-channel", "execution": "dense"},
    "label": "8-bit", "backend": "torch", "batch_size": 32, "accuracy": 0.95, "macro_f1": 0.94, "test_n": 4,
    "accuracy_ci95": [0.5, 0.99], "test_correct": "1101", "latency_ms_p50": 0.8, "latency_ms_p10": 0.7,
    "latency_ms_p90": 0.9, "latency_ms_min": 0.6, "latency_runs": 20, "peak_memory_bytes": 40960,
    "activation_peak_bytes": 1024, "weight_memory_bytes": 39936, "size_bytes": 20000, "ideal_size_bytes": 18000,
    "params": 5000, "nonzero_params": 5000, "macs": 70000, "estimated_fields": ["macs", "ideal_size_bytes"],
    "achieved_prune_ratio": 0.0, "notes": [], "device": "cpu", "threads": 2, "host": "h", "torch": "2.5",
    "load_avg_1m": 1.5, "cores": 2, "cpu": "x86", "cpu_flags": ["avx2"], "measure_seconds": 1.2, "status": "ok",
    "seconds": 1.3, "prune_seconds": 0.0, "finetune_loss": NAN, "accuracy_delta": 0.0,
    "accuracy_delta_ci95": [-0.01, 0.01], "accuracy_delta_measurable": False, "mcnemar_p": 1.0, "paired_n": 4,
}
# An LLM record as llm_point_record wrote it (it always named its kind); a diverged perplexity is inf.
LLM = {
    "execution": "torch", "perplexity": 23.5, "nll_per_token": 3.16, "tokens_scored": 4096, "context_len": 256,
    "stride": None, "text_source": "builtin:pydoc-topics", "perplexity_seconds": 3.1, "prefill_ms_p10": 9.0,
    "prefill_ms_p50": 10.0, "prefill_ms_p90": 11.0, "latency_ms_p10": 9.0, "latency_ms_p50": 10.0,
    "latency_ms_p90": 11.0, "latency_kind": "prefill", "latency_runs": 3, "batch_size": 1,
    "decode_tokens_per_s": 40.0, "peak_rss_mb": 512.0, "peak_memory_bytes": 536870912, "accuracy": 0.6,
    "test_n": 50, "label_words": {"0": "no", "1": "yes"}, "params": 135000000, "nonzero_params": 135000000,
    "decoder_sparsity": 0.0, "size_bytes": 540000000, "size_written": "float32 safetensors", "threads": 2,
    "cores": 2, "cpu": "x86", "cpu_flags": [], "load_avg_1m": None, "kind": "llm",
    "config": {"quant_method": "rtn", "bits": 8}, "label": "rtn 8-bit", "steps": [], "settings": {},
    "ideal_size_bytes": 140000000, "compress_seconds": 1.0, "measured_at": 1.7e9, "seconds": 20.0,
    "device": "cpu", "model": "smollm2", "status": "ok",
}


def _v1_store(path: Path) -> Path:
    """A store as the previous release wrote it: a classifier run and an LLM run, written with raw inserts."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")  # as the previous release's Store opened it
        db.executescript(SCHEMA_V1)
        runs = [("c1", "classifier run", "digits", "base-c", {"bits": [32, 8]}, {"test_accuracy": 0.97}),
                ("l1", "llm run", "llm", "base-l", {"kind": "llm", "bits": [8]}, {"kind": "llm", "key": "base-l"})]
        for run_id, name, scenario, base, spec, baseline in runs:
            db.execute("INSERT INTO runs (run_id, name, scenario, baseline_key, spec_json, baseline_json, status,"
                       " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'finished', 1.0, 1.0)",
                       (run_id, name, scenario, base, json.dumps(spec), json.dumps(baseline)))
        points = [("c1", "base-c", "k1", "ok", None, CLASSIFIER),
                  ("c1", "base-c", "k2", "failed", "RuntimeError: boom",
                   {"config": {"bits": 4}, "label": "4-bit", "status": "failed", "error": "RuntimeError: boom",
                    "batch_size": 32, "device": "cpu", "traceback": "..."}),
                  ("l1", "base-l", "k3", "ok", None, {**LLM, "perplexity": INF}),
                  ("l1", "base-l", "k4", "ok", None, {k: v for k, v in LLM.items() if k not in ("kind", "accuracy")})]
        for run_id, base, key, status, error, record in points:
            db.execute("INSERT INTO points (run_id, baseline_key, point_key, status, error, record_json, created_at)"
                       " VALUES (?, ?, ?, ?, ?, ?, 1.0)", (run_id, base, key, status, error, json.dumps(record)))
    return path


def _dump(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stored_version(path: Path):
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            return None
        return int(db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN (records hold NaNs on purpose)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


# -- the upgrade of a version-1 store ---------------------------------------------------------------------
def test_a_version_1_store_is_upgraded_on_open(tmp_path):
    path = _v1_store(tmp_path / "v1.sqlite")
    assert _stored_version(path) is None
    store = Store(path)
    assert _stored_version(path) == STORE_VERSION == 2 and store.notice is None and not store.upgrade_on_read
    by_key = {p["point_key"]: p for run in ("c1", "l1") for p in store.points(run)}
    expected = {"k1": ("classifier", "accuracy"), "k2": ("classifier", "accuracy"), "k3": ("llm", "perplexity"),
                "k4": ("llm", "perplexity")}  # k4: an LLM record that did not name its kind (perplexity only)
    for key, (kind, metric) in expected.items():
        point = by_key[key]
        assert (point["schema_version"], point["kind"], point["quality_metric"]) == (SCHEMA_VERSION, kind, metric)
    # every figure is kept as it was, NaN and inf included
    classifier = {k: v for k, v in by_key["k1"].items()
                  if k not in ("schema_version", "kind", "quality_metric", "point_id", "run_id", "point_key",
                               "baseline_key", "error")}
    assert _same(classifier, CLASSIFIER)
    assert math.isnan(by_key["k1"]["finetune_loss"]) and by_key["k3"]["perplexity"] == INF
    assert by_key["k2"]["status"] == "failed" and by_key["k2"]["error"] == "RuntimeError: boom"
    assert {r["run_id"]: r["kind"] for r in store.runs()} == {"c1": "classifier", "l1": "llm"}
    # the upgrade is in the file, not only in what was read
    with sqlite3.connect(path) as db:
        stored = {k: json.loads(r) for k, r in db.execute("SELECT point_key, record_json FROM points")}
    assert all(r["schema_version"] == 2 and r["kind"] and r["quality_metric"] for r in stored.values())
    assert store.integrity_ok()


def test_the_upgrade_is_idempotent(tmp_path):
    path = _v1_store(tmp_path / "v1.sqlite")
    Store(path)
    once = _dump(path)
    Store(path)
    Store(path).points("c1")
    assert _dump(path) == once  # opening an upgraded store writes nothing
    for record in (CLASSIFIER, LLM, {"perplexity": 3.0}):
        assert _same(upgrade_record(upgrade_record(record)), upgrade_record(record))


def test_a_failed_upgrade_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    path = _v1_store(tmp_path / "v1.sqlite")
    before = _dump(path)
    calls = []

    def fail_on_the_third(record):
        calls.append(record)
        if len(calls) == 3:
            raise RuntimeError("killed mid-upgrade")
        return upgrade_record(record)

    monkeypatch.setattr("gemini_core.results.store.upgrade_record", fail_on_the_third)
    with pytest.raises(RuntimeError, match="killed mid-upgrade"):
        Store(path)
    assert _dump(path) == before and _stored_version(path) is None  # one transaction: all or nothing
    monkeypatch.undo()
    assert Store(path).points("l1")[0]["kind"] == "llm"


def test_stores_opened_at_once_upgrade_once(tmp_path):
    path = _v1_store(tmp_path / "v1.sqlite")
    errors = []

    def open_store():
        try:
            Store(path).points("c1")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and _stored_version(path) == 2
    assert [p["kind"] for p in Store(path).points("l1")] == ["llm", "llm"]


def test_a_new_store_starts_at_this_version(tmp_path):
    path = tmp_path / "new.sqlite"
    store = Store(path)
    assert _stored_version(path) == STORE_VERSION
    store.ensure_run("r", "run", "digits", "b", {})
    store.ensure_run("q", "llm run", "llm", "b", {"kind": "llm"})
    assert {r["run_id"]: r["kind"] for r in store.runs()} == {"r": "classifier", "q": "llm"}
    with pytest.raises(GeminiError, match="unknown model kind 'recommender'"):
        store.ensure_run("x", "run", "digits", "b", {}, kind="recommender")


# -- a newer store is refused ------------------------------------------------------------------------------
def test_a_newer_store_is_refused_with_one_line(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    path = home / "gemini.sqlite"
    Store(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    before = _dump(path)
    with pytest.raises(GeminiError) as caught:
        Store(path)
    message = str(caught.value)
    assert "\n" not in message and "store version 3" in message and "cannot read it" in message
    assert f"reads up to {STORE_VERSION}" in message
    with pytest.raises(GeminiError, match="store version 3"):
        Store(path, read_only=True)
    monkeypatch.setenv("GEMINI_HOME", str(home))
    assert main(["runs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "newer version" in err[0], err
    assert _dump(path) == before


# -- a store that cannot be written --------------------------------------------------------------------------
def test_a_read_only_version_1_store_is_read_upgraded_in_memory(tmp_path):
    path = _v1_store(tmp_path / "v1.sqlite")
    before = _file_hash(path)
    store = Store(path, read_only=True)
    assert store.upgrade_on_read and "nothing in it is lost" in store.notice and "\n" not in store.notice
    points = {p["point_key"]: p for run in ("c1", "l1") for p in store.points(run)}
    assert [points[k]["kind"] for k in ("k1", "k2", "k3", "k4")] == ["classifier", "classifier", "llm", "llm"]
    assert all(p["schema_version"] == 2 for p in points.values())
    assert points["k1"]["quality_metric"] == "accuracy" and points["k4"]["quality_metric"] == "perplexity"
    assert store.find_point("base-l", "k3")["kind"] == "llm"
    assert store.get_point(points["k1"]["point_id"])["kind"] == "classifier"
    assert {r["run_id"]: r["kind"] for r in store.runs()} == {"c1": "classifier", "l1": "llm"}
    with pytest.raises(GeminiError) as caught:
        store.add_point("c1", "base-c", "k9", dict(CLASSIFIER))
    assert "read-only" in str(caught.value) and "\n" not in str(caught.value)
    assert _file_hash(path) == before and _stored_version(path) is None  # not a byte written


def test_a_store_that_turns_out_unwritable_is_read_in_memory(tmp_path, monkeypatch):
    """A read-only file or folder: SQLite refuses the upgrade's first write; the store is read as it is."""
    path = _v1_store(tmp_path / "v1.sqlite")
    before = _dump(path)

    def refused(self, db):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(Store, "_upgrade", refused)
    store = Store(path)
    assert store.read_only and store.upgrade_on_read and "nothing in it is lost" in store.notice
    assert [p["kind"] for p in store.points("l1")] == ["llm", "llm"]
    assert _dump(path) == before


def test_a_read_only_current_store_reads_as_it_is(tmp_path):
    path = tmp_path / "s.sqlite"
    writer = Store(path)
    writer.ensure_run("r", "run", "digits", "b", {})
    writer.add_point("r", "b", "k", dict(CLASSIFIER))
    reader = Store(path, read_only=True)
    assert reader.notice is None and not reader.upgrade_on_read
    assert reader.points("r")[0]["kind"] == "classifier"
    with pytest.raises(GeminiError, match="no run store at"):
        Store(tmp_path / "missing.sqlite", read_only=True)


# -- add_point checks every record ------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, words", [
    ("latency_ms_p50", "12", "field latency_ms_p50: Input should be a valid number"),
    ("size_bytes", -1, "field size_bytes: Input should be greater than or equal to 0"),
    ("size_bytes", 10.5, "field size_bytes: Input should be a valid integer"),
    ("accuracy", 1.5, "field accuracy: must be at most 1"),
    ("peak_memory_bytes", "a lot", "field peak_memory_bytes"),
    ("test_correct", "1102", "field test_correct"),
    ("kind", "recommender", "field kind: unknown model kind 'recommender'"),
    ("quality_metric", "perplexity", "field quality_metric: the quality metric of classifier points is 'accuracy'"),
    ("latency_ms_p99", -3.0, "field latency_ms_p99: must be at least 0"),
    ("threads", True, "field threads"),
])
def test_a_malformed_record_is_refused_and_nothing_is_written(tmp_path, field, value, words):
    path = tmp_path / "s.sqlite"
    store = Store(path)
    store.ensure_run("r", "run", "digits", "b", {})
    store.add_point("r", "b", "k", dict(CLASSIFIER))
    before = _dump(path)
    for key in ("k", "new"):  # neither a replacement nor a new row
        with pytest.raises(GeminiError) as caught:
            store.add_point("r", "b", key, {**CLASSIFIER, field: value})
        message = str(caught.value)
        assert words in message and "\n" not in message, message
        assert message.startswith("point record '8-bit': field ")
    assert _dump(path) == before


def test_a_record_round_trips_through_the_store(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.ensure_run("r", "run", "digits", "b", {})
    for key, record in (("c", CLASSIFIER), ("l", {**LLM, "perplexity": INF, "accuracy": NAN})):
        point_id = store.add_point("r", "b", key, dict(record), status=record["status"])
        read = store.get_point(point_id)
        expected = {**PointRecord.validate_dict({**record, "status": "ok", "error": None}), "point_id": point_id,
                    "run_id": "r", "point_key": key, "baseline_key": "b"}
        assert _same(read, expected)
        assert _same(PointRecord.validate_dict(read), read)  # a stored record is a valid record as it is
        line = json.loads(point_json(read))  # and so is its JSON line, NaN and inf included
        assert _same(line, read)
    assert store.get_point(2)["perplexity"] == INF and math.isnan(store.get_point(2)["accuracy"])
    assert math.isnan(store.get_point(1)["finetune_loss"])


def test_add_point_row_status_wins(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.ensure_run("r", "run", "digits", "b", {})
    point_id = store.add_point("r", "b", "k", {"config": {"bits": 4}, "label": "4-bit"}, status="failed",
                               error="RuntimeError: boom")
    point = store.get_point(point_id)
    assert (point["status"], point["error"], point["kind"]) == ("failed", "RuntimeError: boom", "classifier")


# -- the record itself ---------------------------------------------------------------------------------------
def test_validate_dict_keeps_a_dict_and_fills_the_kind():
    out = PointRecord.validate_dict(CLASSIFIER)
    assert isinstance(out, dict) and list(out)[:3] == ["schema_version", "kind", "quality_metric"]
    assert (out["schema_version"], out["kind"], out["quality_metric"]) == (2, "classifier", "accuracy")
    assert _same({k: v for k, v in out.items() if k not in ("schema_version", "kind", "quality_metric")},
                 CLASSIFIER)  # the caller's fields, values and order
    assert list(out)[3:] == list(CLASSIFIER)
    assert PointRecord.validate_dict(LLM)["quality_metric"] == "perplexity"
    normalised = PointRecord.validate_dict({"size_bytes": 10.0, "latency_ms_p50": 2, "accuracy_ci95": (0.1, 0.2)})
    assert normalised["size_bytes"] == 10 and isinstance(normalised["size_bytes"], int)
    assert isinstance(normalised["latency_ms_p50"], float) and normalised["accuracy_ci95"] == [0.1, 0.2]
    with pytest.raises(GeminiError, match="schema version 3 was written by a newer gemini"):
        PointRecord.validate_dict({"schema_version": 3})
    with pytest.raises(GeminiError, match="a point record is a JSON object"):
        PointRecord.validate_dict(["not", "a", "record"])
    with pytest.raises(GeminiError, match="field schema_version: 'two' is not a version"):
        PointRecord.validate_dict({"schema_version": "two"})
    assert PointRecord.validate_dict({"schema_version": None})["schema_version"] == 2


def test_legacy_kind_reads_records_from_before_kinds():
    assert legacy_kind({"kind": "llm", "accuracy": 0.9}) == "llm"
    assert legacy_kind({"perplexity": 12.0}) == "llm"
    assert legacy_kind({"perplexity": 12.0, "accuracy": 0.5}) == "classifier"
    assert legacy_kind({"perplexity": NAN}) == "classifier" and legacy_kind({"perplexity": INF}) == "classifier"
    assert legacy_kind({"accuracy": 0.9}) == legacy_kind({}) == "classifier"
    assert record_module.DEFAULT_KIND == "classifier"


def test_the_cli_writes_points_through_the_schema(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    _v1_store(home / "gemini.sqlite")
    monkeypatch.setenv("GEMINI_HOME", str(home))
    assert main(["points", "c1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and all(p["schema_version"] == 2 and p["kind"] == "classifier" for p in lines)
    assert all(p["quality_metric"] == "accuracy" for p in lines) and math.isnan(lines[0]["finetune_loss"])


def test_the_cli_says_an_unwritable_old_store_is_read_as_it_is(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    path = _v1_store(home / "gemini.sqlite")
    before = _dump(path)

    def refused(self, db):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(Store, "_upgrade", refused)
    monkeypatch.setenv("GEMINI_HOME", str(home))
    assert main(["runs"]) == 0
    captured = capsys.readouterr()
    assert sorted(json.loads(line)["run_id"] for line in captured.out.splitlines()) == ["c1", "l1"]
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "nothing in it is lost" in err[0], err
    assert _dump(path) == before
