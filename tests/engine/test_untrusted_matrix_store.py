"""Untrusted input, class 10: a corrupt or unreadable store is reported before any training.

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

from pathlib import Path

import pytest

from gemini_core.cli import main


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
