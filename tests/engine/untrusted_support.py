"""Untrusted files and destructive commands: one parametrized matrix per class, one file per
class (``test_untrusted_matrix_*.py``).

Every case runs the real CLI entry point (``gemini_core.cli:main``, in process) against a home folder
holding the digits baseline and an earlier run (the session fixtures ``home``, ``export_dir`` and ``d`` in
``conftest.py``), and asserts with ``run_cli``: exit status 2, exactly one line on stderr naming the problem
(no traceback), the store and the baselines unchanged. Classes:

1. recipe schema   2. paths from checkpoints, special files   3. caps before allocation
4. overwrite only ours   5. uploads (tests/app/test_app_untrusted.py and below)   6. numbers
7. damaged files   8. full disk, read-only home, stale temporaries   9. HTML (AppTest file)   10. the store
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

from gemini_core.cli import main

try:
    from tests.engine.test_bad_input_matrix import earlier_points, store_snapshot
except ImportError:  # pragma: no cover
    from test_bad_input_matrix import earlier_points, store_snapshot


def recipe_variant(export_dir: Path, where: Path, edit) -> Path:
    """A copy of the good export whose recipe.json went through ``edit(recipe)`` (returns the folder)."""
    return folder_variant(export_dir, where, lambda folder, recipe: edit(recipe), replaces_recipe=True)


def folder_variant(export_dir: Path, where: Path, edit, replaces_recipe: bool = False) -> Path:
    """A copy of the good export changed by ``edit(folder, recipe)``: its files (links, extra or dropped
    files, files outside it in ``where``) and its recipe, written back after the edit (returns the folder).
    ``replaces_recipe``: what ``edit`` returns, if not None, is written as the recipe instead."""
    folder = where / f"variant-{len(list(where.glob('variant-*')))}"
    shutil.copytree(export_dir, folder)
    recipe = json.loads((folder / "recipe.json").read_text())
    result = edit(folder, recipe)
    recipe = result if replaces_recipe and result is not None else recipe
    (folder / "recipe.json").write_text(json.dumps(recipe))
    return folder


def listed(folder: Path, rel: str) -> dict:
    """The ``recipe.files`` entry a sender would write for ``folder/rel`` (its real checksum and size)."""
    from gemini_core.checkpoint.format import sha256_file

    return {"sha256": sha256_file(folder / rel), "bytes": (folder / rel).stat().st_size}


def run_cli(argv, home_path: Path, monkeypatch, capsys, run_id: str | None = None, progress: bool = False) -> str:
    """Run the CLI; assert exit 2, exactly one 'error: ' line on stderr, store and baselines unchanged.

    ``progress``: the failure comes after work began (a full disk while saving): progress lines may
    precede the one error line, which must be the last.
    """
    monkeypatch.setenv("GEMINI_HOME", str(home_path))
    before = store_snapshot(home_path)
    points = earlier_points(home_path, run_id) if run_id else None
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    if progress:
        err = [line for line in err if line.startswith(("error", "Traceback"))]
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    assert store_snapshot(home_path) == before
    if run_id:
        assert earlier_points(home_path, run_id) == points
    return err[0]


def private_home(home_path: Path, where: Path) -> Path:
    """A copy of the shared home for a case that damages or locks its store (the shared one stays as it is)."""
    target = where / "home"
    shutil.copytree(home_path, target)
    return target


def run_cli_ok(argv, home_path: Path, monkeypatch, capsys) -> tuple[list[str], list[str]]:
    """Run a command that must succeed (exit 0, no traceback): (stdout lines, stderr lines)."""
    monkeypatch.setenv("GEMINI_HOME", str(home_path))
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 0, err
    assert not any("Traceback" in line for line in err), err
    return captured.out.strip().splitlines(), err


def sqlite_error(kind, message: str, code: int, name: str):
    """A sqlite3 error carrying SQLite's result code, as the library raises it (``kind``: its class)."""
    exc = kind(message)
    exc.sqlite_errorcode, exc.sqlite_errorname = code, name
    return exc


def store_sqlite_with(monkeypatch, factory) -> None:
    """The run store's SQLite connections (only the store's: the test's own look at the file stays real) made
    by ``factory``, a ``sqlite3.Connection`` subclass that plays a disk's failure."""
    import sqlite3
    import types

    proxy = types.ModuleType("sqlite3")
    proxy.__dict__.update({k: v for k, v in vars(sqlite3).items() if not k.startswith("__")})
    proxy.connect = lambda *args, **kwargs: sqlite3.connect(*args, **{**kwargs, "factory": factory})
    monkeypatch.setattr("gemini_core.results.store.sqlite3", proxy)


class ReadOnlyDisk(sqlite3.Connection):
    """SQLite on a read-only file system, as measured on a read-only mount: a WAL store cannot be opened, not
    even with mode=ro, because its -shm file cannot be created; only an immutable open reads it."""

    def __init__(self, database, *args, **kwargs):
        super().__init__(database, *args, **kwargs)
        self._refused = "immutable=1" not in str(database)

    def execute(self, sql, *args):
        if self._refused:
            raise sqlite_error(sqlite3.OperationalError, "unable to open database file", 14, "SQLITE_CANTOPEN")
        return super().execute(sql, *args)


def read_only_home(home_path: Path, monkeypatch) -> None:
    """``home_path`` as on a read-only file system, for this process: nothing under it writable (os.access)
    and the run store's SQLite as above."""
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        inside = Path(path) == home_path or home_path in Path(path).parents
        return False if inside and mode & os.W_OK else real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    store_sqlite_with(monkeypatch, ReadOnlyDisk)
