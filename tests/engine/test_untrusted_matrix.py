"""Untrusted files and destructive commands (issue 14): one parametrized matrix per class.

Every case runs the real CLI entry point (``gemini_core.cli:main``, in process) against a home folder
holding the digits baseline and an earlier run, and asserts: exit status 2, exactly one line on stderr
naming the problem (no traceback), the store and the baselines unchanged. Classes:

1. recipe schema   2. paths from checkpoints, special files   3. caps before allocation
4. overwrite only ours   5. uploads (tests/app/test_app_untrusted.py and below)   6. numbers
7. damaged files   8. full disk, read-only home, stale temporaries   9. HTML (AppTest file)   10. the store
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from gemini_core.cli import main

try:
    from tests.engine.test_bad_input_matrix import GOOD_CSV, earlier_points, store_snapshot
except ImportError:  # pragma: no cover
    from test_bad_input_matrix import GOOD_CSV, earlier_points, store_snapshot

FAST = {"min_runs": 3, "min_seconds": 0.0}
_OPEN_SOCKETS: list = []
SECRET = "SECRETCOLUMN_do_not_show,another_secret\n1,2\n3,4\n"


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def home(tmp_path_factory, digits):
    """A home with the digits baseline and an earlier run of 2 points."""
    from gemini_core.results.store import Store
    from gemini_core.workflows.sweep import SweepSpec, run_sweep

    scenario, baseline = digits
    home = tmp_path_factory.mktemp("untrusted_home")
    shutil.copytree(baseline.path, home / "baselines" / baseline.path.name)
    records = list(run_sweep(scenario, baseline, SweepSpec(bits=(32, 8), batch_size=4),
                             store=Store(home / "gemini.sqlite"), latency_kwargs=FAST, name="earlier"))
    assert all(r["status"] == "ok" for r in records)
    return home, records[0]["run_id"]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, digits):
    """A good digits export (8 bits), outside the home."""
    from gemini_core.compress import compress
    from gemini_core.config import CompressionConfig
    from gemini_core.workflows import export as ex

    scenario, baseline = digits
    folder = tmp_path_factory.mktemp("good_export") / "good"
    return ex.export_compressed(compress(baseline.model, CompressionConfig(bits=8), scenario), scenario, baseline,
                                folder, measure=False)


@pytest.fixture(scope="module")
def d(tmp_path_factory, export_dir):
    """Every bad file of the matrix, made once."""
    from gemini_core.checkpoint.archive import zip_export
    from gemini_core.checkpoint.format import sha256_file

    d = tmp_path_factory.mktemp("untrusted_files")
    (d / "good.csv").write_text(GOOD_CSV)
    (d / "secret.csv").write_text(SECRET)
    os.mkfifo(d / "fifo.csv")
    os.mkfifo(d / "fifo.npz")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(d / "sock.csv"))
    _OPEN_SOCKETS.append(sock)  # kept open for the module
    # tabular data with non-finite numbers
    rows = "".join(f"{i},{i % 3},{'a' if i % 2 else 'b'}\n" for i in range(40))
    (d / "inf.csv").write_text("x,y,label\n" + rows + "inf,1,a\n")
    (d / "neg_inf.csv").write_text("x,y,label\n" + rows.replace("\n5,2,a", "\n-inf,2,a", 1))
    (d / "huge_value.csv").write_text("x,y,label\n" + rows + "1e300,1,b\n")
    # zips
    good_zip = zip_export(export_dir)
    (d / "good.zip").write_bytes(good_zip)
    _bad_crc(good_zip, d / "bad_crc.zip")
    _patched_zip(good_zip, d / "encrypted.zip", flag=0x1)
    _patched_zip(good_zip, d / "method99.zip", method=99)
    (d / "truncated.zip").write_bytes(good_zip[: len(good_zip) // 2])
    with zipfile.ZipFile(d / "many.zip", "w") as archive:
        archive.writestr("x/recipe.json", "{}")
        for i in range(40):
            archive.writestr(f"x/f{i}.txt", "x")
    with zipfile.ZipFile(d / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x/recipe.json", (export_dir / "recipe.json").read_text())
        archive.writestr("x/model.safetensors", b"\0" * (8 << 20))
    # npz
    np.savez(d / "zero_d.npz", x=np.array(3.0), y=np.array([1]))
    (d / "not_zip.npz").write_bytes(b"\x93NUMPY this is not a zip")
    np.savez(d / "ok.npz", x=np.zeros((20, 8, 8)), y=np.arange(20) % 2)
    (d / "truncated.npz").write_bytes((d / "ok.npz").read_bytes()[:300])
    _huge_header_npz(d / "huge_shape.npz")
    np.save(d / "plain.npy", np.zeros((4, 8, 8)))
    shutil.copy(d / "plain.npy", d / "renamed_npy.npz")
    # images
    for name in ("bomb_images", "broken_images"):
        for cls in ("a", "b"):
            (d / name / cls).mkdir(parents=True)
    _png_header(d / "bomb_images" / "a" / "big.png", 30000, 30000)
    _png_header(d / "bomb_images" / "b" / "big.png", 30000, 30000)
    for cls in ("a", "b"):
        (d / "broken_images" / cls / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    # exports with a truncated model file (checksum recomputed: a sender can do that)
    trunc = shutil.copytree(export_dir, d / "trunc_export")
    blob = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(blob[: len(blob) // 3])
    recipe = json.loads((trunc / "recipe.json").read_text())
    recipe["files"]["model.safetensors"]["sha256"] = sha256_file(trunc / "model.safetensors")
    (trunc / "recipe.json").write_text(json.dumps(recipe))
    (d / "empty.zip").write_bytes(b"")
    (d / "not_ours").mkdir()
    (d / "not_ours" / "keep.txt").write_text("mine")
    (d / "fake_export").mkdir()
    (d / "fake_export" / "recipe.json").write_text(json.dumps({"format": "something-else"}))
    (d / "a_dir_out").mkdir()
    return d


def _bad_crc(blob: bytes, out: Path) -> None:
    """Flip one byte inside the stored data of recipe.json (its CRC then fails)."""
    data = bytearray(blob)
    with zipfile.ZipFile(__import__("io").BytesIO(blob)) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("README.md"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 5] ^= 0xFF
    out.write_bytes(bytes(data))


def _patched_zip(blob: bytes, out: Path, flag: int = 0, method: int | None = None) -> None:
    """Set a general-purpose flag or the compression method of every entry (local and central headers)."""
    data = bytearray(blob)
    for sig, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = data.find(sig)
        while at != -1:
            old_flag = struct.unpack_from("<H", data, at + flag_at)[0]
            struct.pack_into("<H", data, at + flag_at, old_flag | flag)
            if method is not None:
                struct.pack_into("<H", data, at + method_at, method)
            at = data.find(sig, at + 4)
    out.write_bytes(bytes(data))


def _huge_header_npz(out: Path) -> None:
    """An .npz whose x.npy header declares 100000 x 1000 x 1000 float64 (800 GB) with no data."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 1000, 1000), }"
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("x.npy", npy)
        archive.writestr("y.npy", npy)


def _png_header(out: Path, width: int, height: int) -> None:
    """A PNG whose header says width x height (no pixel data needed to trip the pixel cap)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    out.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                    + chunk(b"IEND", b""))


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


# == 3. caps before allocation =================================================================================
def _mlp(in_features, hidden):
    def edit(recipe):
        recipe["scenario"]["arch"] = {"scenario": "digits", "model": "MLP", "in_features": in_features,
                                      "num_classes": 10, "hidden": hidden}
    return edit


def _hf_arch(**config):
    def edit(recipe):
        base = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 64}
        recipe["scenario"]["arch"] = {"scenario": "digits", "model": "hf", "source": "x", "num_labels": 10,
                                      "config": {**base, **config}}
    return edit


CAP_CASES = [
    ("mlp-65536-squared", _mlp(65536, 65536), {}, "parameters, above the limit of 500,000,000"),
    ("mlp-over-schema", _mlp(100000, 100000), {}, "field scenario.arch.in_features"),
    ("bert-hidden-65536", _hf_arch(hidden_size=65536, intermediate_size=65536, num_attention_heads=1),
     {}, "parameters (estimate), above the limit of 500,000,000"),
    ("bert-layers-1000", _hf_arch(num_hidden_layers=1000), {}, "field scenario.arch.config.num_hidden_layers"),
    ("bert-vocab-0", _hf_arch(vocab_size=0), {}, "field scenario.arch.config.vocab_size"),
    ("bert-hidden-string", _hf_arch(hidden_size="huge"), {}, "field scenario.arch.config.hidden_size"),
    ("digits-over-env-cap", None, {"GEMINI_MAX_PARAMS": "1000"}, "above the limit of 1,000 (GEMINI_MAX_PARAMS"),
    ("cap-env-not-a-number", None, {"GEMINI_MAX_PARAMS": "lots"}, "GEMINI_MAX_PARAMS='lots' is not a whole number"),
    ("zip-members-env-cap", "many.zip", {"GEMINI_MAX_EXPORT_MEMBERS": "10"}, "holds 41 files, above the limit of 10"),
    ("zip-member-bytes-cap", "good.zip", {"GEMINI_MAX_EXPORT_MEMBER_BYTES": "100"}, "above the limit of 100"),
    ("zip-total-bytes-cap", "good.zip", {"GEMINI_MAX_EXPORT_BYTES": "100"}, "above the limit of 100"),
    ("zip-bomb-ratio", "bomb.zip", {}, "a zip bomb, refused"),
]


@pytest.mark.parametrize("case_id, edit, env, message", CAP_CASES, ids=[c[0] for c in CAP_CASES])
def test_caps_before_allocation(case_id, edit, env, message, home, export_dir, d, tmp_path, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if isinstance(edit, str):
        target = d / edit
    else:
        target = export_dir if edit is None else recipe_variant(export_dir, tmp_path, edit)
    line = run_cli(["evaluate", str(target), "--device", "cpu"], home[0], monkeypatch, capsys, home[1])
    assert message in line, line


def _arch_set(**values):
    def edit(recipe):
        recipe["scenario"]["arch"].update(values)
    return edit


def _mlp_on_cnn_weights(recipe):
    recipe["scenario"]["arch"] = {"scenario": "digits", "model": "MLP", "in_features": 64, "num_classes": 10,
                                  "hidden": 128}


# A gemini export whose recipe sizes do not describe its weights: compared with the safetensors header
# before any module is built (the build is watched and must never happen).
EXPORT_SHAPE_CASES = [
    ("classes-12", _arch_set(num_classes=12), "field scenario.arch.num_classes does not fit model.safetensors"),
    ("width-mult-16", _arch_set(width_mult=16), "field scenario.arch.width_mult does not fit model.safetensors"),
    ("width-mult-64", _arch_set(width_mult=64), "field scenario.arch.width_mult does not fit model.safetensors"),
    ("in-channels-3", _arch_set(in_channels=3), "field scenario.arch.in_channels does not fit model.safetensors"),
    ("mlp-on-cnn-weights", _mlp_on_cnn_weights, "the file holds classifier.1.bias, which the recipe's architecture"),
    ("header-over-cap", {"GEMINI_MAX_PARAMS": "50000"}, "parameters in the header, above the limit of 50,000"),
]


@pytest.mark.parametrize("case_id, edit, message", EXPORT_SHAPE_CASES, ids=[c[0] for c in EXPORT_SHAPE_CASES])
def test_export_recipe_sizes_against_the_header(case_id, edit, message, home, export_dir, tmp_path, monkeypatch,
                                                capsys):
    from gemini_core.checkpoint import load as load_module

    built = []
    real = load_module.build_architecture
    monkeypatch.setattr(load_module, "build_architecture", lambda arch: built.append(arch) or real(arch))
    if isinstance(edit, dict):
        for name, value in edit.items():
            monkeypatch.setenv(name, value)
        target = export_dir
    else:
        target = recipe_variant(export_dir, tmp_path, edit)
    line = run_cli(["evaluate", str(target), "--device", "cpu"], home[0], monkeypatch, capsys, home[1])
    assert message in line, line
    assert built == []  # refused from the header, before the architecture was built


DATA_CAPS = [
    ("npz-huge-header", ["sweep", "--scenario", "images", "--data", "{d}/huge_shape.npz"], "would need"),
    ("image-30000-squared", ["sweep", "--scenario", "images", "--data", "{d}/bomb_images"],
     "big.png has more pixels than Pillow opens safely, above the limit of 50,000,000 pixels per image"),
    ("export-batch-size-huge", ["export", "--out", "{d}/cap_out", "--batch-size", "50000000"],
     "--batch-size 50000000 is above the limit"),
    ("train-batch-size-huge", ["train", "--train-batch-size", "50000000"], "--train-batch-size 50000000"),
]


@pytest.mark.parametrize("case_id, argv, message", DATA_CAPS, ids=[c[0] for c in DATA_CAPS])
def test_data_caps(case_id, argv, message, home, d, monkeypatch, capsys):
    line = run_cli([a.format(d=d) for a in argv], home[0], monkeypatch, capsys, home[1])
    assert message in line, line


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from gemini_core.scenarios.hf_models import minilm_dir

    folder = tmp_path_factory.mktemp("untrusted_bert") / "model"
    AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True).save_pretrained(folder)
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=64, vocab_size=30522, max_position_embeddings=64,
                                             num_labels=2)).save_pretrained(folder)
    return folder


HF_CONFIG_CASES = [
    ("hidden-mismatch", {"hidden_size": 64}, "hidden_size is 64 but model.safetensors holds"),
    ("hidden-65536", {"hidden_size": 65536, "intermediate_size": 262144, "num_attention_heads": 1},
     "parameters (estimate), above the limit"),
    ("layers-100k", {"num_hidden_layers": 100_000}, "num_hidden_layers is 100000; it must be a whole number"),
    ("layers-2000-estimate", {"num_hidden_layers": 2000, "hidden_size": 4096, "num_attention_heads": 1},
     "parameters (estimate), above the limit"),
    ("vocab-0", {"vocab_size": 0}, "vocab_size is 0"),
    ("hidden-negative", {"hidden_size": -32}, "hidden_size is -32"),
    ("hidden-string", {"hidden_size": "wide"}, "hidden_size"),
]


@pytest.mark.parametrize("case_id, update, message", HF_CONFIG_CASES, ids=[c[0] for c in HF_CONFIG_CASES])
def test_hf_config_checked_before_allocation(case_id, update, message, tiny_bert_dir, home, d, tmp_path,
                                             monkeypatch, capsys):
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **update}))
    argv = ["train", "--scenario", f"hf:{folder}", "--data", str(d / "good.csv"), "--epochs", "1", "--max-steps", "1"]
    line = run_cli(argv, home[0], monkeypatch, capsys, home[1])
    assert message in line, line


def _no_meta_build(monkeypatch):
    """Make the meta-device build fail as it does for a model whose constructor calls ``.item()``."""
    from gemini_core.scenarios import registry, text

    def unbuildable():
        raise RuntimeError("Tensor.item() cannot be called on meta tensors")

    calls = []

    def check(build, what):
        calls.append(what)
        return registry.check_param_count(unbuildable, what)

    monkeypatch.setattr(text, "check_param_count", check)
    return calls


# The guard must not depend on the meta build: the config is checked against the header's shapes and
# the header's parameter count, with the meta build failing like a constructor that calls .item().
NO_META_CASES = [
    ("hidden-mismatch", {"hidden_size": 64}, {}, "hidden_size is 64 but model.safetensors holds"),
    ("vocab-mismatch", {"vocab_size": 1000}, {}, "vocab_size is 1,000 but model.safetensors holds"),
    ("ffn-mismatch", {"intermediate_size": 128}, {}, "intermediate_size is 128 but model.safetensors holds"),
    ("layers-mismatch", {"num_hidden_layers": 3}, {}, "num_hidden_layers is 3 but model.safetensors holds 2 layers"),
    ("header-over-cap", "extra", {"GEMINI_MAX_PARAMS": "2000000"}, "parameters in the header, above the limit of 2,000,000"),
]


@pytest.mark.parametrize("case_id, update, env, message", NO_META_CASES, ids=[c[0] for c in NO_META_CASES])
def test_hf_guard_without_the_meta_build(case_id, update, env, message, tiny_bert_dir, home, d, tmp_path,
                                         monkeypatch, capsys):
    from safetensors.torch import load_file, save_file

    calls = _no_meta_build(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    if update == "extra":  # a config that estimates small, weights that hold 3M parameters more
        tensors = load_file(folder / "model.safetensors")
        save_file({**tensors, "extra.weight": torch.zeros(3000, 1000)}, folder / "model.safetensors")
    else:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **update}))
    argv = ["train", "--scenario", f"hf:{folder}", "--data", str(d / "good.csv"), "--epochs", "1", "--max-steps", "1"]
    line = run_cli(argv, home[0], monkeypatch, capsys, home[1])
    assert message in line, line
    assert calls == []  # refused before even the meta build was tried


def test_hf_model_without_a_meta_build_still_trains(tiny_bert_dir, home, d, tmp_path, monkeypatch, capsys):
    """The control: an honest folder whose meta build fails passes the header checks and trains."""
    calls = _no_meta_build(monkeypatch)
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "own_home"))
    argv = ["train", "--scenario", f"hf:{folder}", "--data", str(d / "good.csv"), "--epochs", "1", "--max-steps", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    assert calls, "the meta build was not even tried"


def test_hf_truncated_safetensors_is_one_line(tiny_bert_dir, home, d, tmp_path, monkeypatch, capsys):
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    blob = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(blob[:1000])
    argv = ["train", "--scenario", f"hf:{folder}", "--data", str(d / "good.csv"), "--epochs", "1", "--max-steps", "1"]
    line = run_cli(argv, home[0], monkeypatch, capsys, home[1])
    assert "damaged or truncated" in line, line


def test_evaluate_unpacks_a_zip_once(home, d, tmp_path, monkeypatch, capsys):
    """A zipped export is checked and unpacked once (with the archive's caps) and that folder is reused."""
    extractions = []
    real = zipfile.ZipFile.extractall
    monkeypatch.setattr(zipfile.ZipFile, "extractall", lambda self, *a, **k: extractions.append(1) or real(self, *a, **k))
    monkeypatch.setenv("GEMINI_HOME", str(home[0]))
    assert main(["evaluate", str(d / "good.zip"), "--device", "cpu"]) == 0, capsys.readouterr().err
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert extractions == [1]
    assert record["export"] == str((d / "good.zip").resolve()) and record["reencoded_identical"] is True


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


# == 5. uploads ================================================================================================
class Upload:
    def __init__(self, name, data):
        self.name, self._data = name, data

    def getvalue(self):
        return self._data


def test_upload_partial_file_is_never_reused(home, monkeypatch):
    from ui.state import save_upload

    monkeypatch.setenv("GEMINI_HOME", str(home[0]))
    data = GOOD_CSV.encode()
    path = Path(save_upload(Upload("reviews.csv", data)))
    path.write_bytes(data[:10])  # what a full disk left behind
    assert Path(save_upload(Upload("reviews.csv", data))).read_bytes() == data
    other = Path(save_upload(Upload("reviews.csv", data + b"more,pos\n")))
    assert other != path and other.read_bytes() == data + b"more,pos\n"
    assert not list(path.parent.glob(".*tmp-*"))


def test_upload_on_a_full_disk_is_one_message_and_leaves_nothing(home, monkeypatch):
    from gemini_core.errors import GeminiError
    from ui.state import save_upload

    monkeypatch.setenv("GEMINI_HOME", str(home[0]))
    real_open = open

    def full_disk_open(file, mode="r", *args, **kwargs):
        if "w" in mode and ".tmp-" in str(file):
            handle = real_open(file, mode, *args, **kwargs)
            handle.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk_open)
    with pytest.raises(GeminiError, match="no space left on device while saving the upload 'big.csv'"):
        save_upload(Upload("big.csv", b"x,y\n" * 100))
    monkeypatch.undo()
    uploads = home[0] / "uploads"
    assert not any("big.csv" in p.name for p in uploads.iterdir())


def test_extensionless_data_is_accepted_by_content(tmp_path):
    from gemini_core.scenarios.table_data import validate_text_file

    path = tmp_path / "SMSSpamCollection"
    path.write_text("".join(f"{'ham' if i % 2 else 'spam'}\tmessage number {i} here\n" for i in range(40)))
    summary = validate_text_file(path, text_column="1", label_column="0", header="no")
    assert summary["rows"] == 40


# == 6. numbers ================================================================================================
NUMBER_CASES = [
    ("lr-nan", ["train", "--lr", "nan"], "--lr nan is not a finite number"),
    ("lr-inf", ["train", "--lr", "inf"], "--lr inf is not a finite number"),
    ("lr-zero", ["train", "--lr", "0"], "--lr 0.0 must be above 0"),
    ("lr-negative", ["train", "--lr=-1"], "--lr -1.0 must be above 0"),
    ("threads-100000", ["train", "--threads", "100000"], "--threads 100000 is more than this machine can use"),
    ("threads-0", ["train", "--threads", "0"], "--threads 0 must be at least 1"),
    ("epochs-0", ["train", "--epochs", "0"], "--epochs must be at least 1"),
    ("max-steps-0", ["train", "--max-steps", "0"], "--max-steps must be at least 1"),
    ("train-batch-0", ["train", "--train-batch-size", "0"], "--train-batch-size must be at least 1"),
    ("max-length-0", ["sweep", "--scenario", "text", "--data", "{d}/good.csv", "--max-length", "0"],
     "--max-length must be at least 2"),
    ("allocate-max-drop-nan", ["sensitivity", "--allocate", "max-drop=nan"], "budget nan is not a finite number"),
    ("allocate-speedup-inf", ["sensitivity", "--allocate", "speedup=inf"], "speed-up inf is not a finite number"),
    ("allocate-max-drop-500", ["sensitivity", "--allocate", "max-drop=500"], "above 100 points"),
    ("prune-ratio-nan", ["sweep", "--prune-method", "l1-structured", "--prune-ratios", "nan"], "prune ratio nan"),
    ("device-tpu", ["train", "--device", "tpu"], "device 'tpu' is not one of cpu, cuda, cuda:N"),
    ("device-cuda-9", ["train", "--device", "cuda:9"], "cuda:9"),
    ("out-is-a-folder", ["sweep", "--out", "{d}/a_dir_out"], "is a folder; give a file name"),
    ("tabular-inf", ["sweep", "--scenario", "tabular", "--data", "{d}/inf.csv"],
     "column 'x' holds 1 infinite or out-of-range value(s)"),
    ("tabular-neg-inf", ["sweep", "--scenario", "tabular", "--data", "{d}/neg_inf.csv", "--label-column", "label"],
     "column 'x' holds 1 infinite or out-of-range value(s) (beyond +-1e+30) at data row(s) 6"),
    ("tabular-1e300", ["sweep", "--scenario", "tabular", "--data", "{d}/huge_value.csv"], "data row(s) 41"),
]
if not torch.cuda.is_available():
    NUMBER_CASES.append(("device-cuda-without-cuda", ["train", "--device", "cuda"], "no usable CUDA GPU"))


@pytest.mark.parametrize("case_id, argv, message", NUMBER_CASES, ids=[c[0] for c in NUMBER_CASES])
def test_numbers(case_id, argv, message, home, d, monkeypatch, capsys):
    line = run_cli([a.format(d=d) for a in argv], home[0], monkeypatch, capsys, home[1])
    assert message in line, line


def test_out_unwritable(home, d, tmp_path, monkeypatch, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    line = run_cli(["sweep", "--out", str(folder / "p.jsonl")], home[0], monkeypatch, capsys, home[1])
    assert "is not writable" in line


# == 7. damaged files ==========================================================================================
DAMAGED = [
    ("zip-bad-crc", ["evaluate", "{d}/bad_crc.zip"], "bad_crc.zip is a damaged zip"),
    ("zip-encrypted", ["evaluate", "{d}/encrypted.zip"], "is encrypted"),
    ("zip-unknown-method", ["evaluate", "{d}/method99.zip"], "uses compression method 99"),
    ("zip-truncated", ["evaluate", "{d}/truncated.zip"], "neither an export folder nor a zip"),
    ("zip-empty", ["evaluate", "{d}/empty.zip"], "is empty"),
    ("export-truncated-safetensors", ["evaluate", "{d}/trunc_export"], "model.safetensors cannot be decoded"),
    ("npz-0-d", ["sweep", "--scenario", "images", "--data", "{d}/zero_d.npz"], "x has shape ()"),
    ("npz-not-a-zip", ["sweep", "--scenario", "images", "--data", "{d}/not_zip.npz"], "is not an .npz file"),
    ("npz-truncated", ["sweep", "--scenario", "images", "--data", "{d}/truncated.npz"], "is not an .npz file"),
    ("npz-renamed-npy", ["sweep", "--scenario", "images", "--data", "{d}/renamed_npy.npz"], "is not an .npz file"),
    ("images-unreadable", ["sweep", "--scenario", "images", "--data", "{d}/broken_images"], "has readable images in 0 class folder(s)"),
]


@pytest.mark.parametrize("case_id, argv, message", DAMAGED, ids=[c[0] for c in DAMAGED])
def test_damaged_files(case_id, argv, message, home, d, monkeypatch, capsys):
    line = run_cli([a.format(d=d) for a in argv], home[0], monkeypatch, capsys, home[1])
    assert message in line, line


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
