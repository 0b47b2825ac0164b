"""Untrusted input, class 2: paths never come from a checkpoint; special files are refused wherever data is read.

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

import pytest

try:
    from tests.engine.untrusted_support import recipe_variant, run_cli
except ImportError:  # pragma: no cover
    from untrusted_support import recipe_variant, run_cli


# == 2. paths never come from a checkpoint; special files refused wherever data is read =========================
def _scenario(name, **options):
    def edit(recipe):
        recipe["scenario"]["name"] = name
        recipe["scenario"]["options"] = options
    return edit


PATH_CASES = [
    # (id, recipe edit or None, extra argv (formatted with the files folder), message, forbidden words)
    ("recipe-data-etc-passwd", _scenario("text", data="/etc/passwd"), [], "give the test data now", ["root:"]),
    ("recipe-data-secret-csv", lambda r: _scenario("tabular", data=str(r["_d"] / "secret.csv"))(r), [],
     "give the test data now", ["SECRETCOLUMN", "another_secret"]),
    ("recipe-data-dev-zero", _scenario("images", data="/dev/zero"), [], "give the test data now", []),
    ("recipe-hub-id", _scenario("hf:bert-base-uncased", data="x.csv"), [], "never chooses a folder to open or a model "
     "to download", []),
    ("recipe-model-dir", _scenario("hf:/etc", data="/etc/passwd"), [], "give the model's folder now", ["root:"]),
    ("recipe-test-data", _scenario("text", data="/etc/hostname", test_data="/etc/passwd"), [],
     "give the test data now", ["root:"]),
    ("builtin-with-data", None, ["--data", "{d}/secret.csv"], "uses its built-in data", ["SECRETCOLUMN"]),
    ("user-data-fifo", _scenario("tabular"), ["--data", "{d}/fifo.csv"], "is a named pipe (FIFO)", []),
    ("user-data-socket", _scenario("tabular"), ["--data", "{d}/sock.csv"], "is a socket", []),
    ("user-data-device", _scenario("tabular"), ["--data", "/dev/zero"], "is a device file", []),
    ("model-for-builtin", None, ["--model", "{d}"], "--model is for hf: exports", []),
]


@pytest.mark.parametrize("case_id, edit, extra, message, forbidden", PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_paths_never_come_from_a_checkpoint(case_id, edit, extra, message, forbidden, home, export_dir, d, tmp_path,
                                            monkeypatch, capsys):
    home_path, run_id = home

    def with_files(recipe):
        recipe["_d"] = d
        if edit is not None:
            edit(recipe)
        recipe.pop("_d")

    folder = recipe_variant(export_dir, tmp_path, with_files)
    argv = ["evaluate", str(folder), "--device", "cpu", *[a.format(d=d) for a in extra]]
    line = run_cli(argv, home_path, monkeypatch, capsys, run_id)
    assert message in line, line
    assert not any(word in line for word in forbidden), line


SPECIAL_DATA = [
    ("sweep-text-fifo", ["sweep", "--scenario", "text", "--data", "{d}/fifo.csv"], "named pipe (FIFO)"),
    ("sweep-tabular-socket", ["sweep", "--scenario", "tabular", "--data", "{d}/sock.csv"], "is a socket"),
    ("sweep-tabular-dev-zero", ["sweep", "--scenario", "tabular", "--data", "/dev/zero"], "is a device file"),
    ("sweep-images-dev-zero", ["sweep", "--scenario", "images", "--data", "/dev/zero"], "is a device file"),
    ("sweep-images-fifo-npz", ["sweep", "--scenario", "images", "--data", "{d}/fifo.npz"], "named pipe (FIFO)"),
    ("evaluate-dev-null", ["evaluate", "/dev/null"], "(a device, pipe or socket)"),
    ("evaluate-fifo", ["evaluate", "{d}/fifo.csv"], "(a device, pipe or socket)"),
]


@pytest.mark.parametrize("case_id, argv, message", SPECIAL_DATA, ids=[c[0] for c in SPECIAL_DATA])
def test_special_files_are_refused(case_id, argv, message, home, d, monkeypatch, capsys):
    line = run_cli([a.format(d=d) for a in argv], home[0], monkeypatch, capsys, home[1])
    assert message in line, line
