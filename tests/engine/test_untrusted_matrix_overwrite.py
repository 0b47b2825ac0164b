"""Untrusted input, class 4: --overwrite replaces only an export of ours.

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

import json
import shutil

import pytest

from gemini_core.cli import main

try:
    from tests.engine.untrusted_support import run_cli
except ImportError:  # pragma: no cover
    from untrusted_support import run_cli


# == 4. overwrite only what is ours ============================================================================
OVERWRITE_CASES = [
    ("the-home", lambda h, d: h, "is the home folder"),
    ("above-the-home", lambda h, d: h.parent, "is the home folder"),
    ("baselines", lambda h, d: h / "baselines", "inside the home folder's 'baselines'"),
    ("a-baseline", lambda h, d: next((h / "baselines").iterdir()), "inside the home folder's 'baselines'"),
    ("uploads", lambda h, d: h / "uploads", "inside the home folder's 'uploads'"),
    ("exports-itself", lambda h, d: h / "exports", "the exports folder itself"),
    ("folder-with-other-content", lambda h, d: d / "not_ours", "is not an export written by gemini"),
    ("folder-with-foreign-recipe", lambda h, d: d / "fake_export", "is not an export written by gemini"),
]


@pytest.mark.parametrize("case_id, target, message", OVERWRITE_CASES, ids=[c[0] for c in OVERWRITE_CASES])
def test_overwrite_only_our_exports(case_id, target, message, home, d, monkeypatch, capsys):
    home_path, run_id = home
    out = target(home_path, d)
    def listing():  # SQLite's WAL side files come and go with any open connection (see store_snapshot)
        return sorted(str(p) for p in out.rglob("*") if not p.name.endswith(("-wal", "-shm")))

    before = listing() if out.exists() and out != home_path.parent else None
    line = run_cli(["export", "--out", str(out), "--overwrite", "--epochs", "1", "--max-steps", "10"], home_path,
                   monkeypatch, capsys, run_id)
    assert message in line, line
    if before is not None:
        assert listing() == before
    assert (d / "not_ours" / "keep.txt").read_text() == "mine"


def test_overwrite_replaces_an_earlier_export(home, export_dir, tmp_path, monkeypatch, capsys):
    """The positive case: an export of ours is replaced with --overwrite (exit 0)."""
    monkeypatch.setenv("GEMINI_HOME", str(home[0]))
    out = shutil.copytree(export_dir, tmp_path / "mine")
    assert main(["export", "--out", str(out), "--overwrite", "--bits", "32", "--batch-size", "4"]) == 0
    assert json.loads((out / "recipe.json").read_text())["config"]["bits"] == 32
