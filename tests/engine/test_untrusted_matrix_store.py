"""Untrusted input, class 10: a corrupt or unreadable store is reported before any training.

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gemini_core.cli import main

try:
    from tests.engine.untrusted_support import private_home, run_cli, run_cli_ok, sqlite_error, store_sqlite_with
except ImportError:  # pragma: no cover
    from untrusted_support import private_home, run_cli, run_cli_ok, sqlite_error, store_sqlite_with


# == 10. a corrupt or unreadable store is reported before any training ==========================================
def _garbage_store(path: Path):
    path.write_bytes(b"this is not a sqlite database" * 100)


def _truncated_store(path: Path):
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
        db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
    blob = path.read_bytes()
    path.write_bytes(blob[:100] + b"\xff" * (len(blob) - 100))


def _folder_store(path: Path):
    path.mkdir()


STORE_CASES = [
    ("garbage-sweep", _garbage_store, ["sweep", "--scenario", "breast-cancer"], "run store"),
    ("garbage-sensitivity", _garbage_store, ["sensitivity", "--scenario", "breast-cancer"], "run store"),
    ("garbage-points", _garbage_store, ["runs"], "run store"),
    ("damaged-pages-sweep", _truncated_store, ["sweep", "--scenario", "breast-cancer"], "run store"),
    ("store-is-a-folder", _folder_store, ["sweep", "--scenario", "breast-cancer"], "is a folder, not a SQLite file"),
]


@pytest.mark.parametrize("case_id, make, argv, message", STORE_CASES, ids=[c[0] for c in STORE_CASES])
def test_corrupt_store_before_training(case_id, make, argv, message, digits, tmp_path, monkeypatch, capsys):
    home_path = tmp_path / "home"
    (home_path / "baselines").mkdir(parents=True)
    make(home_path / "gemini.sqlite")
    monkeypatch.setenv("GEMINI_HOME", str(home_path))
    assert main([*argv, "--epochs", "1", "--max-steps", "2"] if argv[0] != "runs" else argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert list((home_path / "baselines").iterdir()) == []  # nothing trained
    if message == "run store":  # a really damaged file: the one case told to move it aside
        assert "move it aside" in err[0], err


# == 10b. a valid store with damaged rows, a locked store, a full disk: each told apart ===========================
def _sql(path: Path, statement: str, args=()) -> None:
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute(statement, args)


def _point_ids(path: Path, run_id: str) -> list[int]:
    import sqlite3

    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT point_id FROM points WHERE run_id=? ORDER BY point_id", (run_id,))]


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", "null"], ids=["not-json", "a-list", "null"])
def test_points_skips_damaged_rows_and_names_them(bad, home, tmp_path, monkeypatch, capsys):
    """A valid SQLite file whose point row holds malformed JSON: `points` prints the others and one warning
    line naming the point id; `runs` is unaffected."""
    home_path, run_id = private_home(home[0], tmp_path), home[1]
    store = home_path / "gemini.sqlite"
    first, *rest = _point_ids(store, run_id)
    _sql(store, "UPDATE points SET record_json=? WHERE point_id=?", (bad, first))
    out, err = run_cli_ok(["points", run_id], home_path, monkeypatch, capsys)
    assert [json.loads(line)["point_id"] for line in out] == rest
    assert len(err) == 1 and err[0].startswith("warning: ") and f"point id {first}" in err[0], err
    assert "move it aside" not in err[0]
    for extra in (["--table"], ["--front"], ["--recommend"]):
        run_cli_ok(["points", run_id, *extra], home_path, monkeypatch, capsys)
    out, err = run_cli_ok(["runs"], home_path, monkeypatch, capsys)
    assert [json.loads(line)["run_id"] for line in out] == [run_id] and err == []


def test_runs_skips_a_damaged_run_and_names_it(home, tmp_path, monkeypatch, capsys):
    home_path, run_id = private_home(home[0], tmp_path), home[1]
    store = home_path / "gemini.sqlite"
    _sql(store, "INSERT INTO runs (run_id, name, scenario, baseline_key, spec_json, baseline_json, status, created_at,"
                " updated_at) VALUES ('broken-run', 'x', 'digits', 'k', '{oops', '{}', 'done', 1, 1)")
    out, err = run_cli_ok(["runs"], home_path, monkeypatch, capsys)
    assert [json.loads(line)["run_id"] for line in out] == [run_id]
    assert len(err) == 1 and err[0].startswith("warning: ") and "run id 'broken-run'" in err[0], err
    line = run_cli(["points", "broken-run"], home_path, monkeypatch, capsys)
    assert "broken-run" in line and "damaged" in line and "move it aside" not in line, line


def _slow_lock(monkeypatch) -> None:
    monkeypatch.setattr("gemini_core.results.store.BUSY_TIMEOUT_S", 0.2)  # not SQLite's 30 s wait


def test_a_store_locked_by_another_process_is_not_called_damaged(home, tmp_path, monkeypatch, capsys):
    """Another process holds the write lock: reading still works; a sweep says who holds it and to wait, not
    that the store is unreadable."""
    import sqlite3

    home_path, run_id = private_home(home[0], tmp_path), home[1]
    _slow_lock(monkeypatch)
    other = sqlite3.connect(home_path / "gemini.sqlite", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # what a writer in another process holds while it commits
    try:
        out, _ = run_cli_ok(["runs"], home_path, monkeypatch, capsys)
        assert len(out) == 1
        line = run_cli(["sweep", "--scenario", "digits", "--bits", "32,4", "--batch-size", "4"], home_path,
                       monkeypatch, capsys, run_id, progress=True)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert "locked by another process" in line and "wait" in line, line
    assert "move it aside" not in line and "unreadable" not in line, line


class _FullDisk(sqlite3.Connection):
    """SQLite on a full disk: reading works, every write ends in SQLITE_FULL."""

    def execute(self, sql, *args):
        if sql.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "ALTER"):
            raise sqlite_error(sqlite3.OperationalError, "database or disk is full", 13, "SQLITE_FULL")
        return super().execute(sql, *args)


def test_a_full_disk_under_the_store_says_free_space(home, tmp_path, monkeypatch, capsys):
    home_path, run_id = private_home(home[0], tmp_path), home[1]
    store_sqlite_with(monkeypatch, _FullDisk)
    line = run_cli(["sweep", "--scenario", "digits", "--bits", "32,4", "--batch-size", "4"], home_path,
                   monkeypatch, capsys, run_id, progress=True)
    assert "no space left" in line and "free" in line and str(home_path) in line, line
    assert "move it aside" not in line and "unreadable" not in line, line
