"""Untrusted input, class 8: a full disk, a read-only home, stale temporaries.

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gemini_core.cli import main

try:
    from tests.engine.untrusted_support import private_home, read_only_home, run_cli, run_cli_ok
except ImportError:  # pragma: no cover
    from untrusted_support import private_home, read_only_home, run_cli, run_cli_ok


# == 8. full disk, read-only home, stale temporaries ===========================================================
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_while_exporting(home, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("gemini_core.checkpoint.format._write_bytes", _enospc)
    line = run_cli(["export", "--out", str(tmp_path / "full"), "--batch-size", "4"], home[0], monkeypatch, capsys,
                   home[1], progress=True)
    assert "no space left on device while saving the export" in line, line
    assert list(tmp_path.iterdir()) == []  # no temp leftovers


def test_full_disk_while_training_a_baseline(home, monkeypatch, capsys):
    monkeypatch.setattr("gemini_core.fsio.publish_folder", _enospc)
    monkeypatch.setattr("gemini_core.training.baseline.publish_folder", _enospc, raising=False)
    line = run_cli(["train", "--scenario", "breast-cancer", "--epochs", "1", "--max-steps", "2"], home[0],
                   monkeypatch, capsys, home[1], progress=True)
    assert "no space left on device while saving" in line, line
    assert not [p for p in (home[0] / "baselines").iterdir() if ".tmp-" in p.name]


def test_read_only_home(home, monkeypatch, capsys):
    real_access = os.access
    monkeypatch.setattr("gemini_core.paths.os.access",
                        lambda p, mode: False if Path(p) == home[0] and mode == os.W_OK else real_access(p, mode))
    line = run_cli(["train", "--epochs", "1"], home[0], monkeypatch, capsys, home[1])
    assert "the home folder" in line and "is read-only" in line


def test_read_only_filesystem_error_is_named(home, monkeypatch, capsys):
    def erofs(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("gemini_core.fsio.publish_folder", erofs)
    monkeypatch.setattr("gemini_core.training.baseline.publish_folder", erofs, raising=False)
    line = run_cli(["train", "--scenario", "breast-cancer", "--epochs", "1", "--max-steps", "2"], home[0],
                   monkeypatch, capsys, home[1], progress=True)
    assert "the home folder is read-only" in line, line


def test_stale_temporaries_are_cleaned_at_start(home, d, monkeypatch, capsys):
    home_path = home[0]
    dead = [home_path / "baselines" / ".digits-x.tmp-999999-abc", home_path / "exports" / ".p1.old-999998-x",
            home_path / ".gemini.sqlite.tmp-abc"]
    alive = home_path / "exports" / f".p2.tmp-{os.getppid()}-x"  # a live process: kept
    for folder in dead + [alive]:
        folder.mkdir(parents=True)
        (folder / "recipe.json").write_text("{}")
    monkeypatch.setenv("GEMINI_HOME", str(home_path))
    assert main(["export", "--out", str(d / "not_ours")]) == 2
    capsys.readouterr()
    assert not any(p.exists() for p in dead) and alive.exists()
    shutil.rmtree(alive)


# == 8b. a read-only home: reading works, writing says where and why ==============================================
def test_read_only_home_runs_and_points_still_read(home, tmp_path, monkeypatch, capsys):
    home_path, run_id = private_home(home[0], tmp_path), home[1]
    read_only_home(home_path, monkeypatch)
    out, _ = run_cli_ok(["runs"], home_path, monkeypatch, capsys)
    assert [json.loads(line)["run_id"] for line in out] == [run_id]
    out, _ = run_cli_ok(["points", run_id], home_path, monkeypatch, capsys)
    assert len(out) == 2
    run_cli_ok(["points", run_id, "--table"], home_path, monkeypatch, capsys)
    line = run_cli(["sweep", "--scenario", "digits", "--bits", "32,4"], home_path, monkeypatch, capsys, run_id)
    assert "is read-only" in line and "move it aside" not in line, line


def test_writing_to_a_read_only_store_says_where_and_why(home, tmp_path, monkeypatch):
    from gemini_core.errors import GeminiError
    from gemini_core.results.store import Store

    home_path = private_home(home[0], tmp_path)
    read_only_home(home_path, monkeypatch)
    store = Store(home_path / "gemini.sqlite")  # falls back to reading: the folder cannot be written
    assert store.read_only and len(store.runs()) == 1
    with pytest.raises(GeminiError) as caught:
        store.set_status(home[1], "finished")
    message = str(caught.value)
    assert str(home_path) in message and "read-only" in message and "move it aside" not in message, message
    assert "\n" not in message


def test_read_only_mount_when_the_system_allows_it(home, tmp_path, monkeypatch, capsys):
    """The same on a real read-only bind mount (root with mount rights only; skipped elsewhere)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root and mount to make a read-only mount")
    source, target = private_home(home[0], tmp_path), tmp_path / "ro"
    target.mkdir()
    if subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True).returncode != 0:
        pytest.skip("bind mounts are not allowed here")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], capture_output=True).returncode != 0:
            pytest.skip("read-only remounts are not allowed here")
        out, _ = run_cli_ok(["runs"], target, monkeypatch, capsys)
        assert [json.loads(line)["run_id"] for line in out] == [home[1]]
        out, _ = run_cli_ok(["points", home[1]], target, monkeypatch, capsys)
        assert len(out) == 2
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)


# == 8c. a full disk is noticed before training, not after the whole epoch ========================================
def _free_space(monkeypatch, *free_bytes: int) -> list:
    """``shutil.disk_usage`` reporting ``free_bytes`` in turn (the last one from then on); the folders asked."""
    asked, answers = [], list(free_bytes)
    real = shutil.disk_usage

    def usage(path):
        asked.append(Path(path))
        total, used, _ = real(path)
        return type(real(path))(total, used, answers.pop(0) if len(answers) > 1 else answers[0])

    monkeypatch.setattr(shutil, "disk_usage", usage)
    return asked


def test_full_disk_is_noticed_before_training_starts(home, monkeypatch, capsys):
    monkeypatch.setattr("gemini_core.fsio.publish_folder", _enospc)  # what the save would meet after training
    monkeypatch.setattr("gemini_core.training.baseline.publish_folder", _enospc, raising=False)
    _free_space(monkeypatch, 4096)
    line = run_cli(["train", "--scenario", "breast-cancer", "--epochs", "1", "--max-steps", "2"], home[0],
                   monkeypatch, capsys, home[1])  # one line, no progress line before it: nothing trained
    assert "not enough free space in" in line and str(home[0] / "baselines") in line, line
    assert "bytes" in line and "4,096" in line, line


def test_a_disk_that_fills_while_training_is_noticed_before_the_cache_is_written(home, monkeypatch, capsys):
    _free_space(monkeypatch, 10 ** 12, 4096)  # plenty when training starts, nothing left when it ends
    line = run_cli(["train", "--scenario", "breast-cancer", "--epochs", "1", "--max-steps", "2"], home[0],
                   monkeypatch, capsys, home[1], progress=True)
    assert "not enough free space in" in line and str(home[0] / "baselines") in line, line
    assert not [p for p in (home[0] / "baselines").iterdir() if "breast" in p.name]
