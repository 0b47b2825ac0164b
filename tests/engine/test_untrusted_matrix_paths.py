"""Untrusted input, class 2: paths never come from a checkpoint; special files are refused wherever data is read.

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

from pathlib import Path

import pytest

try:
    from tests.engine.untrusted_support import folder_variant, listed, recipe_variant, run_cli
except ImportError:  # pragma: no cover
    from untrusted_support import folder_variant, listed, recipe_variant, run_cli


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


# == 2b. paths an export's recipe names: inside the export or refused before anything is opened ================
OUTSIDE = "names a file outside the export"


def _gguf_at(path):
    def edit(folder, recipe):
        recipe["llm"]["gguf_file"] = path.format(where=folder.parent) if "{where}" in path else path
    return edit


def _gguf_copy_outside(rel_from_export):
    """A real GGUF (the export's own) beside the export, named by a relative path that climbs out of it."""
    def edit(folder, recipe):
        import shutil

        shutil.copy(folder / "model.gguf", folder.parent / "outside.gguf")
        recipe["llm"]["gguf_file"] = rel_from_export
    return edit


def _files_key(key):
    def edit(folder, recipe):
        recipe["files"][key] = dict(recipe["files"]["README.md"])
    return edit


def _llm_field(field, value):
    def edit(folder, recipe):
        recipe["llm"][field] = value
    return edit


RECIPE_PATH_CASES = [
    # (id, edit(folder, recipe), words the line must not hold)
    ("llm-gguf-etc-passwd", _gguf_at("/etc/passwd"), ["/etc", "passwd", "root:"]),
    ("llm-gguf-etc-shadow", _gguf_at("/etc/shadow"), ["/etc", "shadow"]),
    ("llm-gguf-missing-absolute", _gguf_at("/nonexistent/secret.gguf"), ["nonexistent", "secret"]),
    ("llm-gguf-dotdot-passwd", _gguf_at("../../../../../../etc/passwd"), ["/etc", "passwd", ".."]),
    ("llm-gguf-dotdot-real-gguf", _gguf_copy_outside("../outside.gguf"), ["outside.gguf", ".."]),
    ("llm-gguf-absolute-real-gguf", _gguf_at("{where}/outside.gguf"), ["outside.gguf"]),
    ("llm-gguf-inner-dotdot", _gguf_copy_outside("model/../../outside.gguf"), ["outside.gguf", ".."]),
    ("llm-gguf-home-tilde", _gguf_at("~/.ssh/id_rsa"), ["ssh", "id_rsa"]),
    ("llm-gguf-backslash", _gguf_at("..\\..\\outside.gguf"), ["outside.gguf"]),
    ("llm-gguf-newline", _gguf_at("model.gguf\n/etc/passwd"), ["/etc", "passwd"]),
    ("llm-model-dir-absolute", _llm_field("model_dir", "/etc"), ["/etc"]),
    ("llm-model-dir-dotdot", _llm_field("model_dir", "../../model"), [".."]),
    ("llm-compressed-dir-absolute", _llm_field("compressed_dir", "/usr/lib"), ["/usr"]),
    ("llm-openvino-dir-dotdot", _llm_field("openvino_dir", "../openvino"), [".."]),
    ("files-key-absolute", _files_key("/etc/passwd"), ["/etc", "passwd"]),
    ("files-key-dotdot", _files_key("../../etc/passwd"), ["/etc", "passwd", ".."]),
    ("files-key-newline", _files_key("README.md\nerror: injected"), ["injected"]),
]


@pytest.mark.parametrize("case_id, edit, forbidden", RECIPE_PATH_CASES, ids=[c[0] for c in RECIPE_PATH_CASES])
def test_recipe_paths_stay_inside_the_export(case_id, edit, forbidden, home, llm_export_dir, tmp_path, monkeypatch,
                                            capsys, llm_never_loaded):
    folder = folder_variant(llm_export_dir, tmp_path, edit)
    line = run_cli(["evaluate", str(folder)], home[0], monkeypatch, capsys, home[1])
    assert OUTSIDE in line, line
    assert not any(word in line for word in forbidden), line


def test_a_recipe_cannot_probe_whether_a_server_path_exists(home, llm_export_dir, tmp_path, monkeypatch, capsys,
                                                            llm_never_loaded):
    """The same line whether the file a recipe names exists, exists unreadable, or does not exist."""
    lines = []
    for target in ("/etc/passwd", "/etc/shadow", "/nonexistent/x", "/root/.bashrc", "../../../../etc/hostname"):
        folder = folder_variant(llm_export_dir, tmp_path, _gguf_at(target))
        line = run_cli(["evaluate", str(folder)], home[0], monkeypatch, capsys, home[1])
        lines.append(line.replace(str(folder), "FOLDER"))
    assert len(set(lines)) == 1, lines


def test_a_zipped_export_names_no_file_outside_itself(home, llm_export_dir, tmp_path, monkeypatch, capsys,
                                                     llm_never_loaded):
    """The same refusal inside an uploaded zip (unpacked to a temporary folder, whose parents are the server's)."""
    from gemini_core.checkpoint.archive import zip_export

    folder = folder_variant(llm_export_dir, tmp_path, _gguf_at("../../../../../../etc/passwd"))
    (tmp_path / "upload.zip").write_bytes(zip_export(folder))
    line = run_cli(["evaluate", str(tmp_path / "upload.zip")], home[0], monkeypatch, capsys, home[1])
    assert OUTSIDE in line and "passwd" not in line, line


# == 2c. links and special files inside an export: refused wherever they are, never followed ===================
def _link(rel, target, listed_as_file=False):
    """``rel`` inside the export becomes a symbolic link to ``target`` (a path, or ``{where}/...`` beside the
    export); with ``listed_as_file`` its recipe entry holds the target's real checksum (a sender can do that)."""
    def edit(folder, recipe):
        import os
        import shutil

        path = folder / rel
        where = folder.parent / f"outside-{folder.name}"
        where.mkdir(exist_ok=True)
        if target == "copy":  # a copy of the file or folder itself, outside the export
            dest = where / path.name
            (shutil.copytree if path.is_dir() else shutil.copy)(path, dest)
        else:
            dest = Path(target)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        os.symlink(dest, path)
        if listed_as_file:
            recipe["files"][rel] = listed(folder, rel)
    return edit


LINK_CASES = [
    # (id, which export, edit, message)
    ("llm-gguf-linked-outside-same-checksum", "llm", _link("model.gguf", "copy"), "symbolic link"),
    ("llm-model-folder-linked-outside", "llm", _link("model", "copy"), "symbolic link"),
    ("llm-weights-linked-outside", "llm", _link("model/model.safetensors", "copy"), "symbolic link"),
    ("llm-compressed-config-linked", "llm", _link("compressed/config.json", "copy"), "symbolic link"),
    ("llm-unlisted-link-to-passwd", "llm", _link("notes.txt", "/etc/passwd"), "symbolic link"),
    ("llm-linked-folder-to-etc", "llm", _link("extra", "/etc"), "symbolic link"),
    ("llm-listed-link-to-passwd", "llm", _link("notes.txt", "/etc/passwd", listed_as_file=True), "symbolic link"),
    ("classifier-weights-linked-outside", "classifier", _link("model.safetensors", "copy"), "symbolic link"),
    ("classifier-readme-link-to-passwd", "classifier", _link("README.md", "/etc/passwd", listed_as_file=True),
     "symbolic link"),
    ("classifier-linked-folder", "classifier", _link("extra", "/etc"), "symbolic link"),
]


@pytest.mark.parametrize("case_id, kind, edit, message", LINK_CASES, ids=[c[0] for c in LINK_CASES])
def test_links_inside_an_export_are_refused(case_id, kind, edit, message, home, export_dir, llm_export_dir, tmp_path,
                                           monkeypatch, capsys, llm_never_loaded):
    folder = folder_variant(llm_export_dir if kind == "llm" else export_dir, tmp_path, edit)
    line = run_cli(["evaluate", str(folder), "--device", "cpu"], home[0], monkeypatch, capsys, home[1])
    assert message in line and "root:" not in line and "/etc" not in line, line


# == 2d. every file that is loaded is listed with its checksum and verified ====================================
def _unlist(*prefixes):
    def edit(folder, recipe):
        recipe["files"] = {k: v for k, v in recipe["files"].items() if not k.startswith(prefixes)}
    return edit


def _extra_file(rel, text="x", listed_too=False):
    def edit(folder, recipe):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
        if listed_too:
            recipe["files"][rel] = listed(folder, rel)
    return edit


def _fifo(rel):
    def edit(folder, recipe):
        import os

        os.mkfifo(folder / rel)
    return edit


UNLISTED_CASES = [
    ("llm-gguf-unlisted", "llm", _unlist("model.gguf"), "recipe.json does not list"),
    ("llm-compressed-unlisted", "llm", _unlist("compressed/"), "recipe.json does not list"),
    ("llm-compressed-weights-unlisted", "llm", _unlist("compressed/model.safetensors"), "recipe.json does not list"),
    ("llm-model-config-unlisted", "llm", _unlist("model/config.json"), "recipe.json does not list"),
    ("llm-tokenizer-unlisted", "llm", _unlist("model/tokenizer.json"), "recipe.json does not list"),
    ("llm-extra-weights-in-model", "llm", _extra_file("model/model-00002.safetensors"), "recipe.json does not list"),
    ("llm-extra-file-in-compressed", "llm", _extra_file("compressed/added_tokens.json", "{}"),
     "recipe.json does not list"),
    ("llm-extra-subfolder-file", "llm", _extra_file("model/sub/config.json", "{}"), "recipe.json does not list"),
    ("llm-gguf-missing", "llm", lambda f, r: (f / "model.gguf").unlink(), "model.gguf is missing from the export"),
    ("llm-gguf-named-not-listed", "llm", lambda f, r: (r["llm"].update(gguf_file="other.gguf")),
     "field llm.gguf_file names a file recipe.json does not list"),
    ("llm-fifo-in-export", "llm", _fifo("model/pipe.json"), "a device, pipe or socket"),
    ("classifier-weights-unlisted", "classifier", _unlist("model.safetensors"),
     "recipe.json lists no checksum for model.safetensors"),
    ("classifier-fifo-in-export", "classifier", _fifo("pipe"), "a device, pipe or socket"),
]


@pytest.mark.parametrize("case_id, kind, edit, message", UNLISTED_CASES, ids=[c[0] for c in UNLISTED_CASES])
def test_every_loaded_file_is_listed_and_verified(case_id, kind, edit, message, home, export_dir, llm_export_dir,
                                                  tmp_path, monkeypatch, capsys, llm_never_loaded):
    folder = folder_variant(llm_export_dir if kind == "llm" else export_dir, tmp_path, edit)
    line = run_cli(["evaluate", str(folder), "--device", "cpu"], home[0], monkeypatch, capsys, home[1])
    assert message in line, line


# == 6. one reader for every kind: the same hostile change, the same refusal ==================================
ONE_READER_CASES = [
    ("files-key-absolute", _files_key("/etc/passwd"), OUTSIDE),
    ("files-key-dotdot", _files_key("../x"), OUTSIDE),
    ("weights-unlisted", _unlist("model.safetensors", "model/"), "recipe.json lists no checksum for"),
    ("link-to-passwd", _link("notes.txt", "/etc/passwd"), "symbolic link"),
    ("listed-file-missing", lambda f, r: (f / "README.md").unlink(), "README.md is missing from the export"),
    ("listed-file-changed", lambda f, r: (f / "README.md").write_text("changed"), "checksum mismatch for README.md"),
    ("listed-folder-not-file", lambda f, r: ((f / "README.md").unlink(), (f / "README.md").mkdir()),
     "README.md is not a regular file"),
]


@pytest.mark.parametrize("kind", ["classifier", "llm"])
@pytest.mark.parametrize("case_id, edit, message", ONE_READER_CASES, ids=[c[0] for c in ONE_READER_CASES])
def test_one_reader_for_every_kind(case_id, edit, message, kind, home, export_dir, llm_export_dir, tmp_path,
                                   monkeypatch, capsys, llm_never_loaded):
    from gemini_core.checkpoint import reader

    seen = []
    real = reader.open_export
    monkeypatch.setattr(reader, "open_export", lambda *a, **k: seen.append(1) or real(*a, **k))
    folder = folder_variant(llm_export_dir if kind == "llm" else export_dir, tmp_path, edit)
    line = run_cli(["evaluate", str(folder), "--device", "cpu"], home[0], monkeypatch, capsys, home[1])
    assert message in line, line
    assert seen, "the export was not read through checkpoint.reader.open_export"
