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
import shutil
from pathlib import Path

from gemini_core.cli import main

try:
    from tests.engine.test_bad_input_matrix import earlier_points, store_snapshot
except ImportError:  # pragma: no cover
    from test_bad_input_matrix import earlier_points, store_snapshot


def recipe_variant(export_dir: Path, where: Path, edit) -> Path:
    """A copy of the good export whose recipe.json went through ``edit(recipe)`` (returns the folder)."""
    folder = where / f"variant-{len(list(where.glob('variant-*')))}"
    shutil.copytree(export_dir, folder)
    recipe = json.loads((folder / "recipe.json").read_text())
    result = edit(recipe)
    recipe = recipe if result is None else result
    (folder / "recipe.json").write_text(json.dumps(recipe))
    return folder


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
