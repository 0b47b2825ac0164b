"""Untrusted input, class 1: recipe.json fails its schema.

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

import json

import pytest

from gemini_core.cli import main

try:
    from tests.engine.untrusted_support import recipe_variant, run_cli
except ImportError:  # pragma: no cover
    from untrusted_support import recipe_variant, run_cli


def _set(path: str, value):
    """An edit that sets ``a.b.c`` (``...del`` deletes it)."""
    def edit(recipe):
        keys = path.split(".")
        node = recipe
        for key in keys[:-1]:
            node = node[key]
        if value == "...del":
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return edit


# == 1. recipe.json schema =====================================================================================
SCHEMA_CASES = [
    ("format-version-string", _set("format_version", "1"), "field format_version"),
    ("format-version-0", _set("format_version", 0), "field format_version"),
    ("format-version-future", _set("format_version", 99), "format version 99"),
    ("missing-scenario", _set("scenario", "...del"), "field scenario: Field required"),
    ("missing-config", _set("config", "...del"), "field config: Field required"),
    ("missing-files", _set("files", "...del"), "field files: Field required"),
    ("config-is-list", _set("config", [1, 2]), "field config"),
    ("scenario-name-number", _set("scenario.name", 5), "field scenario.name"),
    ("arch-missing", _set("scenario.arch", "...del"), "field scenario.arch"),
    ("arch-is-list", _set("scenario.arch", [1]), "field scenario.arch"),
    ("arch-unknown-model", _set("scenario.arch.model", "Transformer9000"), "unknown architecture 'Transformer9000'"),
    ("height-string", _set("scenario.arch.height", "8"), "field scenario.arch.height"),
    ("height-negative", _set("scenario.arch.height", -8), "field scenario.arch.height"),
    ("width-huge", _set("scenario.arch.width", 10 ** 9), "field scenario.arch.width"),
    ("height-float", _set("scenario.arch.height", 8.5), "field scenario.arch.height"),
    ("in-channels-missing", _set("scenario.arch.in_channels", "...del"), "field scenario.arch.in_channels"),
    ("num-classes-1", _set("scenario.arch.num_classes", 1), "field scenario.arch.num_classes"),
    ("width-mult-0", _set("scenario.arch.width_mult", 0), "field scenario.arch.width_mult"),
    ("width-mult-bool", _set("scenario.arch.width_mult", True), "field scenario.arch.width_mult"),
    ("sha256-not-hex", lambda r: r["files"].update({"model.safetensors": {"sha256": "zz"}}),
     "field files.model.safetensors.sha256"),
    ("files-entry-string", lambda r: r["files"].update({"model.safetensors": "abc"}), "field files.model.safetensors"),
    ("batch-size-string", _set("record.batch_size", "32"), "field record.batch_size"),
    ("batch-size-5e7", _set("record.batch_size", 50_000_000), "field record.batch_size"),
    ("accuracy-above-1", _set("record.accuracy", 7), "field record.accuracy"),
    ("layer-bits-string", _set("layer_bits", {"conv1": "8"}), "field layer_bits.conv1"),
    ("sparse-names-number", _set("sparse_names", 3), "field sparse_names"),
    ("history-not-list", _set("pruning.history", "rm -rf"), "field pruning.history"),
    ("options-nested", _set("scenario.options", {"data": {"path": "/etc/passwd"}}), "field scenario.options.data"),
    ("recipe-is-list", lambda r: [r], "is not a gemini export recipe"),
    ("format-other", _set("format", "pytorch"), "is not a gemini export recipe"),
]


@pytest.mark.parametrize("case_id, edit, message", SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_recipe_schema(case_id, edit, message, home, export_dir, tmp_path, monkeypatch, capsys):
    home_path, run_id = home
    folder = recipe_variant(export_dir, tmp_path, edit)
    line = run_cli(["evaluate", str(folder), "--device", "cpu"], home_path, monkeypatch, capsys, run_id)
    assert message in line, line


def test_recipe_without_edits_still_evaluates(home, export_dir, monkeypatch, capsys):
    """The matrix can fail: the same export, unedited, evaluates (exit 0)."""
    monkeypatch.setenv("GEMINI_HOME", str(home[0]))
    assert main(["evaluate", str(export_dir), "--device", "cpu", "--batch-size", "8"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy_matches_record"]
