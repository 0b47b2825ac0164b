"""Engine fixtures: a tiny random Llama and a byte-level BPE tokenizer trained offline, saved as safetensors;
the shared home, export and bad files of the untrusted-input matrix (test_untrusted_matrix_*.py)."""
from __future__ import annotations

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

try:
    from tests.engine.test_bad_input_matrix import GOOD_CSV
except ImportError:  # pragma: no cover
    from test_bad_input_matrix import GOOD_CSV


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: loads the real SmolLM2 model (minutes on 2 cores)")


TRAIN_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "A function returns a value; a statement changes the state of the program.",
    "Python evaluates expressions from left to right, except for assignments.",
    "The movie was wonderful and the actors were great.",
    "The film was terrible, boring and far too long.",
]


def build_tokenizer(vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAIN_TEXT * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>")


def build_tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab_size,
                         max_position_embeddings=256, bos_token_id=0, eos_token_id=0,
                         tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = build_tokenizer()
    model = build_tiny_llama(len(tokenizer))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture()
def tiny_lm(tiny_llm_dir):
    from gemini_core.kinds.llm.source import load_local

    return load_local(tiny_llm_dir)


# -- the untrusted-input matrix (test_untrusted_matrix_*.py, see untrusted_support.py) --------------------
# Session-scoped: every file of the matrix shares one home with its real sweep, built once.
FAST = {"min_runs": 3, "min_seconds": 0.0}
_OPEN_SOCKETS: list = []
SECRET = "SECRETCOLUMN_do_not_show,another_secret\n1,2\n3,4\n"


@pytest.fixture(scope="session")
def home(tmp_path_factory, digits):
    """A home with the digits baseline and an earlier run of 2 points."""
    from gemini_core.kinds.classifier.spec import SweepSpec
    from gemini_core.results.store import Store
    from gemini_core.workflows.sweep import run_sweep

    scenario, baseline = digits
    home = tmp_path_factory.mktemp("untrusted_home")
    shutil.copytree(baseline.path, home / "baselines" / baseline.path.name)
    records = list(run_sweep(scenario, SweepSpec(bits=(32, 8), batch_size=4),
                             store=Store(home / "gemini.sqlite"), latency_kwargs=FAST, name="earlier", baseline=baseline))
    assert all(r["status"] == "ok" for r in records)
    return home, records[0]["run_id"]


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory, digits):
    """A good digits export (8 bits), outside the home."""
    from gemini_core.compress import compress
    from gemini_core.config import CompressionConfig
    from gemini_core.kinds.classifier.export import export_compressed

    scenario, baseline = digits
    folder = tmp_path_factory.mktemp("good_export") / "good"
    return export_compressed(compress(baseline.model, CompressionConfig(bits=8), scenario), scenario, baseline,
                                folder, measure=False)


@pytest.fixture(scope="session")
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
    _OPEN_SOCKETS.append(sock)  # kept open for the session
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
    recipe["files"]["model.safetensors"] = {"sha256": sha256_file(trunc / "model.safetensors"),
                                            "bytes": (trunc / "model.safetensors").stat().st_size}
    (trunc / "recipe.json").write_text(json.dumps(recipe))
    (d / "empty.zip").write_bytes(b"")
    (d / "not_ours").mkdir()
    (d / "not_ours" / "keep.txt").write_text("mine")
    (d / "fake_export").mkdir()
    (d / "fake_export" / "recipe.json").write_text(json.dumps({"format": "something-else"}))
    (d / "a_dir_out").mkdir()
    return d


LLM_MATRIX_SETTINGS = {"context_len": 64, "eval_tokens": 128, "calib_samples": 2, "calib_seq_len": 32,
                       "prefill_tokens": 16, "prefill_repeats": 1, "decode_new_tokens": 3, "decode_repeats": 1}


@pytest.fixture(scope="session")
def llm_export_dir(tmp_path_factory, tiny_llm_dir):
    """A good LLM export of the tiny Llama (RTN 8-bit g32: model/, model.gguf in q8_0, compressed/), outside the
    home, written once per session by the product's own writer; hostile variants are copies of it."""
    from gemini_core.kinds.llm.export import write_llm_export
    from gemini_core.kinds.llm.point import LLMPointConfig, LLMSettings, compress_llm
    from gemini_core.scenarios import get_scenario

    scenario = get_scenario("llm", model=f"hf:{tiny_llm_dir}")
    lm = scenario.load()
    config = LLMPointConfig(quant_method="rtn", bits=8, group_size=32)
    settings = LLMSettings(**LLM_MATRIX_SETTINGS)
    model, steps = compress_llm(lm.model, lm.tokenizer, scenario.text_split, config, settings)
    folder = tmp_path_factory.mktemp("good_llm_export") / "llm"
    return write_llm_export(model, lm.tokenizer, scenario, config, settings, folder, steps=steps)


@pytest.fixture()
def llm_never_loaded(monkeypatch):
    """A refused LLM export is refused before any model, GGUF or packed folder is opened or measured: each
    loader of ``kinds.llm.export`` fails the test when it is reached (a hostile recipe that is not refused
    would otherwise run until it is killed)."""
    from gemini_core.kinds.llm import export as llm_export

    def reached(name):
        def fail(*_args, **_kwargs):
            raise AssertionError(f"{name} was reached for an export that must be refused")
        return fail

    for name in ("load_local", "load_compressed", "evaluate_runtime_export", "measure_llm_point"):
        monkeypatch.setattr(llm_export, name, reached(name))


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


RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}  # a loopback test cluster: no token


@pytest.fixture(scope="module")
def ray_test_session():
    """Ray's environment for a loopback test cluster, and the module's Ray instance shut down after it."""
    from gemini_core.workflows import ray_executor

    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    yield
    ray_executor.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
