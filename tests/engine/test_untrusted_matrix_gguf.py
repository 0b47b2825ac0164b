"""Untrusted input, class 7 for GGUF files: the built-in SmolLM2 file, an export's model.gguf and the file
llama.cpp runs are checked in Python before any loader (transformers' GGUF loader, gguf-py, llama.cpp) sees
them.

Each crafted file starts from a small valid Llama GGUF (the product's own writer, or gguf-py's GGUFWriter)
with one field corrupted: header bytes, counts, dimensions, types, metadata values, missing or extra
tensors. Every one must be a single-line ``CheckpointError`` naming the file, from the check itself, from
the loader entry that takes a GGUF path, and from the CLI when the file is the built-in model; nothing is
built at random and nothing is cached in the home.

Part of the untrusted-input matrix; the cases' contract and the shared home are in ``untrusted_support.py``
and ``conftest.py``."""
from __future__ import annotations

import contextlib
import shutil
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

from gemini_core.errors import CheckpointError

try:
    from tests.engine.untrusted_support import run_cli
except ImportError:  # pragma: no cover
    from untrusted_support import run_cli

# A hostile file must fail fast: these bound a case that would otherwise never finish (a billion blocks,
# an array the reader walks forever) so that it fails instead of hanging the run.
CHECK_SECONDS = 20
LOAD_SECONDS = 60


@contextlib.contextmanager
def deadline(seconds: float):
    def expire(_signum, _frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- a good file, and where its fields sit ------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_gguf(tiny_llm_dir, tmp_path_factory) -> Path:
    from gemini_core.kinds.llm.gguf_export import export_gguf
    from gemini_core.kinds.llm.source import load_local

    lm = load_local(tiny_llm_dir)
    return export_gguf(lm.model, lm.tokenizer, tmp_path_factory.mktemp("gguf") / "good.gguf", "q4_0")


def layout(blob: bytes) -> dict:
    """Byte offsets of the header's fields: {'kv': {key: (key_at, type_at, value_at)},
    'tensors': {name: (name_at, ndims_at, dims_at, type_at, offset_at)}}."""
    def string(pos):
        (n,) = struct.unpack_from("<Q", blob, pos)
        return blob[pos + 8:pos + 8 + n].decode(), pos + 8 + n

    widths = {0: 1, 1: 1, 7: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 10: 8, 11: 8, 12: 8}

    def skip(pos, vtype):
        if vtype in widths:
            return pos + widths[vtype]
        if vtype == 8:
            return string(pos)[1]
        sub, count = struct.unpack_from("<IQ", blob, pos)
        pos += 12
        for _ in range(count):
            pos = skip(pos, sub)
        return pos

    n_tensors, n_kv = struct.unpack_from("<QQ", blob, 8)
    pos, kv, tensors = 24, {}, {}
    for _ in range(n_kv):
        key_at = pos
        key, pos = string(pos)
        (vtype,) = struct.unpack_from("<I", blob, pos)
        kv[key] = (key_at, pos, pos + 4)
        pos = skip(pos + 4, vtype)
    for _ in range(n_tensors):
        name_at = pos
        name, pos = string(pos)
        (ndims,) = struct.unpack_from("<I", blob, pos)
        tensors[name] = (name_at, pos, pos + 4, pos + 4 + 8 * ndims, pos + 8 + 8 * ndims)
        pos += 4 + 8 * ndims + 12
    return {"kv": kv, "tensors": tensors}


def patched(good: Path, out: Path, edit) -> Path:
    """A copy of ``good`` whose bytes went through ``edit(bytearray, layout)``."""
    blob = bytearray(good.read_bytes())
    result = edit(blob, layout(bytes(blob)))
    out.write_bytes(bytes(blob if result is None else result))
    return out


def put(fmt: str, at: int, value):
    return lambda blob, _where: struct.pack_into(fmt, blob, at, value)


def rewritten(good: Path, out: Path, kv=None, drop=(), tensors=None, arch="llama", extra_tensors=None) -> Path:
    """``good`` written again by GGUFWriter: metadata ``kv`` ({key: (value, type, sub type)}, None removes),
    tensors in ``drop`` left out, ``tensors`` ({name: float32 array in numpy order}) replacing or adding."""
    reader = GGUFReader(str(good))
    writer = GGUFWriter(str(out), arch)
    kv = dict(kv or {})
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key in kv:
            continue
        sub = field.types[1] if field.types[0] == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), field.types[0], sub)
    for key, spec in kv.items():
        if spec is not None:
            writer.add_key_value(key, *spec)
    replace = dict(tensors or {})
    for t in reader.tensors:
        if t.name in drop:
            continue
        if t.name in replace:
            writer.add_tensor(t.name, replace.pop(t.name))
        else:
            writer.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    for name, array in {**replace, **(extra_tensors or {})}.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


U32, F32, STR, ARR = GGUFValueType.UINT32, GGUFValueType.FLOAT32, GGUFValueType.STRING, GGUFValueType.ARRAY


def kv_value_at(key):
    return lambda w: w["kv"][key][2]


def tensor_at(name, part):
    return lambda w: w["tensors"][name][("name", "ndims", "dims", "type", "offset").index(part)]


def at_patch(fmt, where, value, delta=0):
    def edit(blob, w):
        struct.pack_into(fmt, blob, where(w) + delta, value)
    return edit


def replace_bytes(old: bytes, new: bytes):
    def edit(blob, _w):
        at = bytes(blob).find(old)
        assert at >= 0, old
        blob[at:at + len(new)] = new
    return edit


def sparse_over_cap(good: Path, out: Path) -> Path:
    """The good header, then a hole: a file of 4 GiB that takes no disk."""
    shutil.copy(good, out)
    with open(out, "r+b") as handle:
        handle.truncate(4 << 30)
    return out


def _tokens_field(good):
    return GGUFReader(str(good)).fields["tokenizer.ggml.tokens"].contents()


def _merges_field(good):
    return GGUFReader(str(good)).fields["tokenizer.ggml.merges"].contents()


# (case id, builder(good, out) -> path, words the one line must hold)
def P(edit):
    return lambda good, out: patched(good, out, edit)


def R(**kwargs):
    return lambda good, out: rewritten(good, out, **kwargs)


def raw(data: bytes):
    def build(_good, out):
        out.write_bytes(data)
        return out
    return build


CASES = [
    # the header
    ("empty", raw(b""), "is empty"),
    ("magic", P(put("<4s", 0, b"GGUX")), "not a GGUF file"),
    ("garbage", raw(b"GGUF" + bytes(range(256)) * 4), "not a readable Llama GGUF file"),
    ("version-99", P(put("<I", 4, 99)), "version 99"),
    ("big-endian", P(put(">I", 4, 3)), "byte order"),
    ("tensor-count-huge", P(put("<Q", 8, 1 << 63)), "tensors"),
    ("kv-count-huge", P(put("<Q", 16, 1 << 40)), "metadata entries"),
    ("truncated-header", lambda good, out: raw(good.read_bytes()[:300])(good, out), "truncated"),
    ("truncated-data", lambda good, out: raw(good.read_bytes()[:-100])(good, out), "truncated"),
    ("string-length-huge", P(at_patch("<Q", kv_value_at("general.architecture"), 1 << 62)), "string of"),
    ("string-array-count-huge", P(at_patch("<Q", kv_value_at("tokenizer.ggml.tokens"), 1 << 60, 4)),
     "tokenizer.ggml.tokens"),
    # gguf-py's reader walks a scalar array element by element and never stops past the end of the file
    ("scalar-array-count-huge", P(at_patch("<Q", kv_value_at("tokenizer.ggml.token_type"), 1 << 60, 4)),
     "tokenizer.ggml.token_type"),
    ("nested-array", R(kv={"general.nested": ([[1, 2], [3, 4]], ARR, None)}), "array of arrays"),
    ("value-type-99", P(at_patch("<I", lambda w: w["kv"]["general.name"][1], 99)), "value type 99"),
    ("key-not-utf8", P(replace_bytes(b"general.name", b"general.n\xffme")), "UTF-8"),
    ("duplicate-key", P(replace_bytes(b"tokenizer.ggml.eos_token_id", b"tokenizer.ggml.bos_token_id")),
     "appears twice"),
    ("duplicate-tensor", P(replace_bytes(b"blk.0.attn_v.weight", b"blk.0.attn_k.weight")), "appears twice"),
    ("tensor-name-not-utf8", P(replace_bytes(b"blk.1.attn_v.weight", b"blk.1.attn_\xff.weight")), "UTF-8"),
    ("dims-5", P(at_patch("<I", tensor_at("output_norm.weight", "ndims"), 5)), "dimensions"),
    ("dim-zero", P(at_patch("<Q", tensor_at("output_norm.weight", "dims"), 0)), "dimension"),
    ("dim-huge", P(at_patch("<Q", tensor_at("token_embd.weight", "dims"), 1 << 40, 8)), "parameters"),
    ("type-99", P(at_patch("<I", tensor_at("output_norm.weight", "type"), 99)), "type 99"),
    ("type-i32", P(at_patch("<I", tensor_at("output_norm.weight", "type"), int(GGMLQuantizationType.I32))),
     "I32"),
    ("offset-outside", P(at_patch("<Q", tensor_at("output.weight", "offset"), 1 << 40)), "outside the file"),
    ("offset-misaligned", P(lambda b, w: struct.pack_into("<Q", b, w["tensors"]["output_norm.weight"][4],
                                                          struct.unpack_from("<Q", b, w["tensors"]["output_norm.weight"][4])[0] + 4)),
     "boundary"),
    ("tensors-overlap", P(lambda b, w: struct.pack_into("<Q", b, w["tensors"]["blk.0.ffn_norm.weight"][4],
                                                        struct.unpack_from("<Q", b, w["tensors"]["blk.0.attn_norm.weight"][4])[0])),
     "overlap"),
    ("q4-row-not-blocks", P(at_patch("<Q", tensor_at("blk.0.attn_q.weight", "dims"), 48)), "multiple of 32"),
    ("alignment-3", R(kv={"general.alignment": (3, U32, None)}), "alignment"),
    ("over-size-cap", sparse_over_cap, "the limit for a GGUF file"),
    # the architecture and its sizes
    ("arch-gpt2", R(arch="gpt2"), "architecture 'gpt2'"),
    ("arch-missing", P(replace_bytes(b"general.architecture", b"general.architecturX")), "general.architecture"),
    ("block-count-1e9", R(kv={"llama.block_count": (1_000_000_000, U32, None)}), "llama.block_count is 1000000000"),
    ("block-count-string", R(kv={"llama.block_count": ("two", STR, None)}), "llama.block_count is 'two'"),
    ("block-count-missing", R(kv={"llama.block_count": None}), "no llama.block_count"),
    ("block-count-3", R(kv={"llama.block_count": (3, U32, None)}), "lacks tensor 'blk.2."),
    ("block-count-1", R(kv={"llama.block_count": (1, U32, None)}), "'blk.1."),
    ("zero-tensors", lambda good, out: rewritten(good, out, drop={t.name for t in GGUFReader(str(good)).tensors}),
     "lacks tensor"),
    ("one-tensor-missing", R(drop={"blk.1.ffn_down.weight"}), "lacks tensor 'blk.1.ffn_down.weight'"),
    ("extra-tensor", R(extra_tensors={"blk.0.evil.weight": np.zeros((64,), np.float32)}),
     "'blk.0.evil.weight', which a 2-block Llama does not have"),
    ("wrong-shape", R(tensors={"blk.0.attn_k.weight": np.zeros((64, 64), np.float32)}),
     "'blk.0.attn_k.weight' has shape [64, 64] but the metadata implies [64, 32]"),
    ("head-count-0", R(kv={"llama.attention.head_count": (0, U32, None)}), "llama.attention.head_count is 0"),
    ("head-count-kv-3", R(kv={"llama.attention.head_count_kv": (3, U32, None)}), "does not divide"),
    ("embedding-65", R(kv={"llama.embedding_length": (65, U32, None), "llama.rope.dimension_count": None}),
     "llama.embedding_length"),
    ("ffn-256", R(kv={"llama.feed_forward_length": (256, U32, None)}), "ffn_gate.weight"),
    ("context-length-0", R(kv={"llama.context_length": (0, U32, None)}), "llama.context_length is 0"),
    ("rms-eps-nan", R(kv={"llama.attention.layer_norm_rms_epsilon": (float("nan"), F32, None)}),
     "layer_norm_rms_epsilon"),
    ("vocab-size-mismatch", R(kv={"llama.vocab_size": (301, U32, None)}), "llama.vocab_size is 301"),
    # the tokenizer
    ("tokens-missing", R(kv={"tokenizer.ggml.tokens": None}), "no tokenizer.ggml.tokens"),
    ("tokens-short", lambda good, out: rewritten(good, out, kv={"tokenizer.ggml.tokens": (
        _tokens_field(good)[:-1], ARR, STR)}), "tokenizer.ggml.tokens holds 299 tokens"),
    ("token-not-utf8", P(replace_bytes(b"<|endoftext|>", b"<|endoftext\xff>")), "UTF-8"),
    ("bos-out-of-range", R(kv={"tokenizer.ggml.bos_token_id": (1_000_000, U32, None)}),
     "tokenizer.ggml.bos_token_id is 1000000"),
    ("merge-malformed", lambda good, out: rewritten(good, out, kv={"tokenizer.ggml.merges": (
        ["nospace"] + _merges_field(good)[1:], ARR, STR)}), "tokenizer.ggml.merges"),
    ("merge-unknown-token", lambda good, out: rewritten(good, out, kv={"tokenizer.ggml.merges": (
        ["zq xj"] + _merges_field(good)[1:], ARR, STR)}), "names 'zq', which is not in tokenizer.ggml.tokens"),
    ("tokenizer-model-unknown", R(kv={"tokenizer.ggml.model": ("evil", STR, None)}), "tokenizer.ggml.model is 'evil'"),
]


def _build(case_id, builder, good, tmp_path) -> Path:
    return builder(good, tmp_path / f"{case_id}.gguf")


def _one_line(exc: CheckpointError, path: Path) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    assert path.name in text, text
    assert str(path.parent) not in text, text  # the file's name, not a path
    return text


@pytest.mark.parametrize("case_id, builder, message", CASES, ids=[c[0] for c in CASES])
def test_gguf_check_refuses_in_one_line(case_id, builder, message, good_gguf, tmp_path):
    from gemini_core.kinds.llm.gguf_check import check_gguf

    path = _build(case_id, builder, good_gguf, tmp_path)
    with deadline(CHECK_SECONDS), pytest.raises(CheckpointError) as caught:
        check_gguf(path)
    assert message in _one_line(caught.value, path), str(caught.value)


@pytest.mark.parametrize("case_id, builder, message", CASES, ids=[c[0] for c in CASES])
def test_gguf_loader_refuses_before_transformers(case_id, builder, message, good_gguf, tmp_path):
    """The loader entry the built-in model and an export's model.gguf go through: one line, nothing built."""
    from gemini_core.kinds.llm import source

    path = _build(case_id, builder, good_gguf, tmp_path)
    with deadline(LOAD_SECONDS), pytest.raises(CheckpointError) as caught:
        source.load_gguf(path)
    assert message in _one_line(caught.value, path), str(caught.value)


@pytest.mark.parametrize("case_id", ["scalar-array-count-huge", "dims-5", "type-i32", "zero-tensors",
                                     "one-tensor-missing", "wrong-shape", "garbage"])
def test_the_llamacpp_path_uses_the_same_check(case_id, good_gguf, tmp_path):
    from gemini_core.kinds.llm.runtimes import llamacpp_llm

    builder, message = next((b, m) for c, b, m in CASES if c == case_id)
    path = _build(case_id, builder, good_gguf, tmp_path)
    with deadline(CHECK_SECONDS), pytest.raises(CheckpointError) as caught:
        llamacpp_llm.read_checked(path)
    assert message in _one_line(caught.value, path)


def test_good_files_pass_the_check(good_gguf, tiny_lm, tmp_path):
    """The product's own files, every block type it writes, and a tied head (no output.weight)."""
    from gemini_core.kinds.llm import source
    from gemini_core.kinds.llm.gguf_check import check_gguf
    from gemini_core.kinds.llm.gguf_export import export_gguf

    check_gguf(good_gguf)
    for qtype in ("f32", "f16", "q8_0", "q4_1"):
        check_gguf(export_gguf(tiny_lm.model, tiny_lm.tokenizer, tmp_path / f"{qtype}.gguf", qtype))
    tied = rewritten(good_gguf, tmp_path / "tied.gguf", drop={"output.weight"})
    check_gguf(tied)
    model, _tokenizer = source.load_gguf(tied)
    assert model.config.tie_word_embeddings


def test_the_export_reload_path_is_checked(good_gguf, tmp_path):
    """An export's model.gguf reloaded without llama.cpp goes through the same check."""
    import importlib.util

    from gemini_core.kinds.llm.runtimes import exports
    from gemini_core.kinds.llm.runtimes.base import LLMRunSettings

    if importlib.util.find_spec("llama_cpp") is not None:  # pragma: no cover - then llama.cpp's path is taken
        pytest.skip("llama.cpp installed: read_checked covers this path")
    path = rewritten(good_gguf, tmp_path / "model.gguf", drop={"blk.0.attn_q.weight"})
    with pytest.raises(CheckpointError, match="model.gguf lacks tensor 'blk.0.attn_q.weight'"):
        exports.reload_runner(path, "gguf", LLMRunSettings())


# -- the built-in model through the CLI: one line, exit 2, nothing cached in the home ------------------------
CLI_CASES = ["zero-tensors", "block-count-1e9", "one-tensor-missing", "garbage", "scalar-array-count-huge",
             "wrong-shape"]


@pytest.mark.parametrize("case_id", CLI_CASES)
def test_builtin_gguf_is_checked_before_it_is_converted_and_cached(case_id, good_gguf, home, tmp_path,
                                                                   monkeypatch, capsys):
    from gemini_core.kinds.llm import source

    own_home = tmp_path / "home"
    shutil.copytree(home[0], own_home)
    builder, message = next((b, m) for c, b, m in CASES if c == case_id)
    target = own_home / "models" / "smollm2" / source.SMOLLM2_GGUF
    target.parent.mkdir(parents=True)
    shutil.copy(_build(case_id, builder, good_gguf, tmp_path), target)
    monkeypatch.setattr(source, "_installed_gguf", lambda: None)
    monkeypatch.setattr(source, "_download_wheel", lambda *a: pytest.fail("the file was there; no download"))
    argv = ["sweep", "--scenario", "llm", "--model", "smollm2", "--quant", "rtn", "--quant-bits", "8",
            "--eval-tokens", "64", "--context-len", "32"]
    with deadline(LOAD_SECONDS):
        line = run_cli(argv, own_home, monkeypatch, capsys, progress=True)
    assert message in line and source.SMOLLM2_GGUF in line, line
    assert not (own_home / "cache" / "smollm2" / "float32").exists()
