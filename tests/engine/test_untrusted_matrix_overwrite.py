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


# == 4b. --overwrite replaces an earlier export only when it holds nothing but the files its recipe lists ======
def _empty_files_recipe(folder, export_dir):
    """A folder of the user's files with a recipe.json of our format that lists none of them (on main the
    folder passed as ours and --overwrite deleted the user's files)."""
    folder.mkdir()
    (folder / "thesis.tex").write_text("mine")
    (folder / "data").mkdir()
    (folder / "data" / "results.csv").write_text("a,b\n1,2\n")
    recipe = json.loads((export_dir / "recipe.json").read_text())
    recipe["files"] = {}
    (folder / "recipe.json").write_text(json.dumps(recipe))


def _ours_plus(folder, export_dir):
    shutil.copytree(export_dir, folder)
    (folder / "notes.txt").write_text("mine")


def _ours_changed(folder, export_dir):
    shutil.copytree(export_dir, folder)
    (folder / "README.md").write_text("my own notes about this model")


def _ours_nested_recipe(folder, export_dir):
    shutil.copytree(export_dir, folder)
    recipe = json.loads((export_dir / "recipe.json").read_text())
    (folder / "recipe.json").write_text(json.dumps(recipe)[:-1] + ', "deep": ' + "[" * 5000 + "]" * 5000 + "}")


def _ours_with_a_link(folder, export_dir):
    shutil.copytree(export_dir, folder)
    (folder / "elsewhere").symlink_to(folder.parent / "keep_me")


NOT_ONLY_OURS = [
    ("recipe-lists-no-files", _empty_files_recipe, "recipe.json lists no checksum for model.safetensors"),
    ("export-plus-a-file", _ours_plus, "recipe.json does not list"),
    ("export-with-a-changed-file", _ours_changed, "checksum mismatch for README.md"),
    ("export-with-a-nested-recipe", _ours_nested_recipe, "recipe.json is nested too deeply"),
    ("export-with-a-link", _ours_with_a_link, "symbolic link"),
]


@pytest.mark.parametrize("case_id, build, message", NOT_ONLY_OURS, ids=[c[0] for c in NOT_ONLY_OURS])
def test_overwrite_replaces_only_what_the_product_wrote(case_id, build, message, home, export_dir, tmp_path,
                                                        monkeypatch, capsys):
    (tmp_path / "keep_me").mkdir()
    (tmp_path / "keep_me" / "x.txt").write_text("mine")
    out = tmp_path / "target"
    build(out, export_dir)
    before = {str(p.relative_to(out)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
              for p in sorted(out.rglob("*"))}
    line = run_cli(["export", "--out", str(out), "--overwrite", "--bits", "32", "--batch-size", "4"], home[0],
                   monkeypatch, capsys, home[1])
    assert "is not an export written by gemini" in line and message in line, line
    after = {str(p.relative_to(out)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
             for p in sorted(out.rglob("*"))}
    assert after == before
    assert (tmp_path / "keep_me" / "x.txt").read_text() == "mine"


def test_overwrite_replaces_an_earlier_llm_export(llm_export_dir, tiny_llm_dir, tmp_path):
    """The positive case for the LLM writer: its own export is replaced; a folder of the user's files is not."""
    from gemini_core.errors import GeminiError
    from gemini_core.kinds.llm.export import write_llm_export
    from gemini_core.kinds.llm.point import LLMPointConfig, LLMSettings
    from gemini_core.scenarios import get_scenario

    try:
        from tests.engine.conftest import LLM_MATRIX_SETTINGS
    except ImportError:  # pragma: no cover
        from conftest import LLM_MATRIX_SETTINGS
    scenario = get_scenario("llm", model=f"hf:{tiny_llm_dir}")
    lm = scenario.load()
    settings = LLMSettings(**LLM_MATRIX_SETTINGS)
    out = shutil.copytree(llm_export_dir, tmp_path / "mine")
    write_llm_export(lm.model, lm.tokenizer, scenario, LLMPointConfig(), settings, out, gguf=None, overwrite=True)
    assert json.loads((out / "recipe.json").read_text())["llm"]["gguf_file"] is None
    assert not (out / "model.gguf").exists()
    theirs = tmp_path / "theirs"
    _empty_files_recipe(theirs, llm_export_dir)
    with pytest.raises(GeminiError, match="is not an export written by gemini"):
        write_llm_export(lm.model, lm.tokenizer, scenario, LLMPointConfig(), settings, theirs, gguf=None,
                         overwrite=True)
    assert (theirs / "thesis.tex").read_text() == "mine"
