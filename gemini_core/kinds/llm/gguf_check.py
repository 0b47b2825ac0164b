"""A GGUF file checked in Python before any loader reads it.

Three parsers read GGUF files here: transformers' GGUF loader (the built-in SmolLM2 and an export's
``model.gguf`` without llama.cpp), gguf-py's ``GGUFReader`` and llama.cpp's C++ parser. None of them is
written for hostile input: gguf-py walks a scalar array past the end of the file without stopping,
transformers builds whatever ``block_count`` says and fills weights it does not find with random values.
So every GGUF goes through ``check_gguf`` first, which

* reads the header with its own bounded walk (the file's size, the magic and version, the tensor and
  metadata counts, every string and array length against what is left of the file, no arrays of arrays,
  UTF-8 names and text);
* checks every tensor's dimensions, type (the block types this product writes), place in the file and
  the total parameter count against ``GEMINI_MAX_PARAMS``;
* checks the architecture (Llama), the sizes in the metadata (bounded, consistent with each other) and
  that the tensors present are exactly those a ``block_count``-block Llama of those sizes has, with the
  shapes the metadata implies: a file with missing tensors is refused, never loaded with random ones;
* checks the tokenizer metadata (vocabulary length, merges, special token ids);
* and then lets gguf-py read it, which must agree with the walk.

Every refusal is one ``CheckpointError`` line that names the file by its name (the caller's label).
"""
from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

from gemini_core.errors import CheckpointError
from gemini_core.scenarios.registry import max_params
from gemini_core.scenarios.sizes import SIZE_BOUNDS, capped_size

# The header (metadata and tensor table) of a real model is a few MB (SmolLM2's: 2 MB, mostly its
# vocabulary); these bounds stop absurd counts before any loop runs.
MAX_HEADER_BYTES = 256 << 20
MAX_METADATA = 4096
MAX_TENSORS = 65536
MAX_ARRAY = SIZE_BOUNDS["vocab_size"]
MAX_STRING = 1 << 20
MAX_NAME = 256
MAX_ALIGNMENT = 1 << 16
BYTES_PER_PARAM = 4  # float32, the widest type read: the file-size cap follows the parameter cap

# The block types the product's writer emits (and the built-in SmolLM2 file holds): {name: (values per
# block, bytes per block)}.
TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 8: ("Q8_0", 32, 34), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20)}
ALLOWED_TYPES = {name for name, _n, _b in TYPES.values()}
TOKENIZER_MODELS = ("gpt2", "llama")

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_INTS = (0, 1, 2, 3, 4, 5, 10, 11)

# (metadata key after "llama.", bound from sizes.SIZE_BOUNDS, required)
_SIZES = (("block_count", "num_hidden_layers", True), ("embedding_length", "hidden_size", True),
          ("feed_forward_length", "intermediate_size", True), ("attention.head_count", "num_attention_heads", True),
          ("attention.head_count_kv", "num_key_value_heads", False),
          ("context_length", "max_position_embeddings", False), ("rope.dimension_count", "head_dim", False),
          ("attention.key_length", "head_dim", False), ("attention.value_length", "head_dim", False),
          ("vocab_size", "vocab_size", False))
_BLOCK_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                  "ffn_down")


@dataclass
class Tensor:
    name: str
    dims: tuple[int, ...]  # in GGUF's own order (the fastest-moving dimension first)
    type_name: str
    offset: int  # from the start of the data section
    nbytes: int


@dataclass
class CheckedGGUF:
    """What the check read: metadata, tensors and the Llama sizes (for callers that need them)."""
    path: Path
    metadata: dict
    tensors: dict[str, Tensor]
    sizes: dict[str, int] = field(default_factory=dict)
    reader: object = None  # gguf-py's GGUFReader over the same file


class _Refused(Exception):
    """A structural problem inside the header walk (becomes 'is not a readable Llama GGUF file: ...')."""


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _Walk:
    """Bounded reads over the mapped header."""

    def __init__(self, data, limit: int, size: int):
        self.data, self.limit, self.size, self.pos = data, limit, size, 0

    def take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > self.limit:
            if self.limit < self.size:
                raise _Refused(f"its header is larger than {MAX_HEADER_BYTES >> 20} MB")
            raise _Refused("it ends inside its header (truncated or damaged)")
        self.pos = start + n
        return start

    def unpack(self, fmt: str):
        return struct.unpack_from(fmt, self.data, self.take(struct.calcsize(fmt)))

    def string(self, what: str, limit: int = MAX_STRING) -> str:
        (length,) = self.unpack("<Q")
        if length > limit:
            raise _Refused(f"{what} is a string of {length:,} bytes; at most {limit:,} are read")
        raw = bytes(self.data[self.take(length):self.pos])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(f"{what} is not UTF-8 text") from None

    def value(self, vtype: int, key: str):
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])[0]
        if vtype == _STRING:
            return self.string(f"metadata {_short(key)}")
        if vtype != _ARRAY:
            raise _Refused(f"metadata {_short(key)} has value type {vtype}, which GGUF does not define")
        sub, count = self.unpack("<IQ")
        if sub == _ARRAY:
            raise _Refused(f"metadata {_short(key)} is an array of arrays, which no Llama file holds")
        if sub not in _SCALARS and sub != _STRING:
            raise _Refused(f"metadata {_short(key)} is an array of value type {sub}, which GGUF does not define")
        if count > MAX_ARRAY:
            raise _Refused(f"metadata {_short(key)} is an array of {count:,} values; at most {MAX_ARRAY:,} are read")
        if sub in _SCALARS:
            width = struct.calcsize(_SCALARS[sub])
            start = self.take(width * count)
            return list(struct.unpack_from(f"<{count}{_SCALARS[sub][1]}", self.data, start))
        if 8 * count > self.limit - self.pos:  # each string holds at least its 8-byte length
            self.take(8 * count)
        return [self.string(f"an entry of metadata {_short(key)}") for _ in range(count)]


def _align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _walk(data, size: int) -> tuple[dict, dict, list[Tensor], int, int]:
    """(metadata, metadata value types, tensors, alignment, data section start) from the header (after the
    magic bytes); _Refused on anything malformed."""
    walk = _Walk(data, min(size, MAX_HEADER_BYTES), size)
    walk.pos = 4
    (version,) = walk.unpack("<I")
    if version & 0xFFFF == 0:
        raise _Refused("it is written in big-endian byte order; only little-endian GGUF files are read")
    if version not in (2, 3):
        raise _Refused(f"GGUF version {version}; versions 2 and 3 are read")
    n_tensors, n_metadata = walk.unpack("<QQ")
    if n_tensors > MAX_TENSORS:
        raise _Refused(f"its header declares {n_tensors:,} tensors; at most {MAX_TENSORS:,} are read")
    if n_metadata > MAX_METADATA:
        raise _Refused(f"its header declares {n_metadata:,} metadata entries; at most {MAX_METADATA:,} are read")
    metadata, types = {}, {}
    for _ in range(n_metadata):
        key = walk.string(f"a metadata key at byte {walk.pos:,}", MAX_NAME)
        if key in metadata:
            raise _Refused(f"metadata key {_short(key)} appears twice")
        (types[key],) = walk.unpack("<I")
        metadata[key] = walk.value(types[key], key)
    alignment = metadata.get("general.alignment", 32)  # GGUF's default
    if "general.alignment" in metadata and (types["general.alignment"] != 4 or not 1 <= alignment <= MAX_ALIGNMENT
                                            or alignment & (alignment - 1)):
        raise _Refused(f"general.alignment is {_short(alignment)}; it must be a 32-bit power of two "
                       f"from 1 to {MAX_ALIGNMENT:,}")
    tensors: list[Tensor] = []
    for _ in range(n_tensors):
        name = walk.string(f"a tensor name at byte {walk.pos:,}", MAX_NAME)
        (n_dims,) = walk.unpack("<I")
        if not 1 <= n_dims <= 4:
            raise _Refused(f"tensor {_short(name)} has {n_dims:,} dimensions; 1 to 4 are read")
        dims = walk.unpack(f"<{n_dims}Q")
        ggml_type, offset = walk.unpack("<IQ")
        tensors.append(_tensor(name, dims, ggml_type, offset))
    return metadata, types, tensors, alignment, _align_up(walk.pos, alignment)


def _tensor(name: str, dims: tuple[int, ...], ggml_type: int, offset: int) -> Tensor:
    if 0 in dims:
        raise _Refused(f"tensor {_short(name)} has a dimension of 0")
    count = math.prod(dims)
    if count > max_params():
        raise _Refused(f"tensor {_short(name)} holds {count:,} parameters, above the limit of {max_params():,} "
                       "(GEMINI_MAX_PARAMS changes it)")
    if ggml_type not in TYPES:
        from gguf import GGMLQuantizationType

        try:
            known = GGMLQuantizationType(ggml_type).name
        except ValueError:
            raise _Refused(f"tensor {_short(name)} has ggml type {ggml_type}, which GGUF does not define") from None
        raise _Refused(f"tensor {_short(name)} is stored as {known}; the types read are "
                       f"{', '.join(sorted(ALLOWED_TYPES))}")
    type_name, block, block_bytes = TYPES[ggml_type]
    if dims[0] % block:
        raise _Refused(f"tensor {_short(name)} has rows of {dims[0]:,} values, not a multiple of {block} "
                       f"({type_name} blocks)")
    return Tensor(name, tuple(dims), type_name, offset, count // block * block_bytes)


def _check_placement(tensors: list[Tensor], data_start: int, size: int, alignment: int) -> dict[str, Tensor]:
    by_name: dict[str, Tensor] = {}
    for tensor in tensors:
        if tensor.name in by_name:
            raise _Refused(f"tensor {_short(tensor.name)} appears twice")
        by_name[tensor.name] = tensor
        if tensor.offset % alignment:
            raise _Refused(f"tensor {_short(tensor.name)} does not start on a {alignment}-byte boundary")
        if data_start + tensor.offset + tensor.nbytes > size:
            raise _Refused(f"tensor {_short(tensor.name)} lies outside the file (truncated or damaged)")
    placed = sorted(tensors, key=lambda t: t.offset)
    for before, after in zip(placed, placed[1:]):
        if before.offset + before.nbytes > after.offset:
            raise _Refused(f"tensors {_short(before.name)} and {_short(after.name)} overlap in the file")
    total = sum(math.prod(t.dims) for t in tensors)
    if total > max_params():
        raise _Refused(f"its tensors hold {total:,} parameters, above the limit of {max_params():,} "
                       "(GEMINI_MAX_PARAMS changes it)")
    return by_name


def _whole(meta: dict, types: dict, name: str, key: str, bound_name: str, required: bool) -> int | None:
    if key not in meta:
        if required:
            raise CheckpointError(f"{name} has no {key}; it is not a complete Llama GGUF file")
        return None
    value, bound = meta[key], SIZE_BOUNDS[bound_name]
    if types.get(key) not in _INTS or not 1 <= value <= bound:
        raise CheckpointError(f"{name}: {key} is {_short(value)}; it must be a whole number from 1 to {bound:,}")
    return value


def _number(meta: dict, types: dict, name: str, key: str, low: float, high: float) -> None:
    if key not in meta:
        return
    value = meta[key]
    ok = types.get(key) in (*_INTS, 6, 12) and math.isfinite(value) and low < value < high
    if not ok:
        raise CheckpointError(f"{name}: {key} is {_short(value)}; it must be a number above {low:g} and below "
                              f"{high:g}")


def _llama_sizes(meta: dict, types: dict, name: str) -> dict[str, int]:
    arch = meta.get("general.architecture")
    if arch is None:
        raise CheckpointError(f"{name} has no general.architecture; it is not a Llama GGUF file")
    if arch != "llama":
        raise CheckpointError(f"{name}: GGUF architecture {_short(arch)}, not llama")
    sizes = {key: _whole(meta, types, name, f"llama.{key}", bound, required) for key, bound, required in _SIZES}
    heads = sizes["attention.head_count"]
    kv = sizes["attention.head_count_kv"] = sizes["attention.head_count_kv"] or heads
    if heads % kv:
        raise CheckpointError(f"{name}: llama.attention.head_count_kv {kv} does not divide "
                              f"llama.attention.head_count {heads}")
    head_dim = sizes["rope.dimension_count"]
    if head_dim is None:  # transformers and llama.cpp then take hidden / heads
        if sizes["embedding_length"] % heads:
            raise CheckpointError(f"{name}: llama.embedding_length {sizes['embedding_length']} is not a multiple "
                                  f"of llama.attention.head_count {heads}")
        head_dim = sizes["embedding_length"] // heads
    for key in ("attention.key_length", "attention.value_length"):
        if sizes[key] is not None and sizes[key] != head_dim:
            raise CheckpointError(f"{name}: llama.{key} is {sizes[key]} but the head dimension is {head_dim}")
    sizes["head_dim"] = head_dim
    _number(meta, types, name, "llama.attention.layer_norm_rms_epsilon", 0, 1)
    _number(meta, types, name, "llama.rope.freq_base", 0, 1e12)
    return sizes


def _expected(sizes: dict, vocab: int) -> dict[str, tuple[int, ...]]:
    hidden, ffn, head_dim = sizes["embedding_length"], sizes["feed_forward_length"], sizes["head_dim"]
    q, kv = sizes["attention.head_count"] * head_dim, sizes["attention.head_count_kv"] * head_dim
    expected = {"token_embd.weight": (hidden, vocab)}
    per_block = {"attn_norm": (hidden,), "attn_q": (hidden, q), "attn_k": (hidden, kv), "attn_v": (hidden, kv),
                 "attn_output": (q, hidden), "ffn_norm": (hidden,), "ffn_gate": (hidden, ffn),
                 "ffn_up": (hidden, ffn), "ffn_down": (ffn, hidden)}
    for block in range(sizes["block_count"]):
        for part in _BLOCK_TENSORS:
            expected[f"blk.{block}.{part}.weight"] = per_block[part]
    expected["output_norm.weight"] = (hidden,)
    return expected


def _check_tensors(tensors: dict[str, Tensor], sizes: dict, name: str) -> int:
    blocks = sizes["block_count"]
    embedding = tensors.get("token_embd.weight")
    if embedding is None or len(embedding.dims) != 2:
        if embedding is None:
            raise CheckpointError(f"{name} lacks tensor 'token_embd.weight', which a {blocks}-block Llama needs; "
                                  "a model with missing weights is refused, not initialised at random")
        raise CheckpointError(f"{name}: tensor 'token_embd.weight' has shape {list(embedding.dims)}; "
                              "it must be [hidden, vocabulary]")
    vocab = embedding.dims[1]
    if vocab > SIZE_BOUNDS["vocab_size"]:
        raise CheckpointError(f"{name}: token_embd.weight has {vocab:,} rows; at most "
                              f"{SIZE_BOUNDS['vocab_size']:,} are read")
    if sizes["vocab_size"] is not None and sizes["vocab_size"] != vocab:
        raise CheckpointError(f"{name}: llama.vocab_size is {sizes['vocab_size']} but token_embd.weight has "
                              f"{vocab:,} rows")
    expected = _expected(sizes, vocab)
    missing = [t for t in expected if t not in tensors]
    if missing:
        more = f" and {len(missing) - 1:,} more" if len(missing) > 1 else ""
        raise CheckpointError(f"{name} lacks tensor {_short(missing[0], 60)}{more}, which a {blocks}-block Llama "
                              "needs; a model with missing weights is refused, not initialised at random")
    optional = {"output.weight": (sizes["embedding_length"], vocab), "rope_freqs.weight": (sizes["head_dim"] // 2,)}
    for tensor_name, tensor in tensors.items():
        shape = expected.get(tensor_name, optional.get(tensor_name))
        if shape is None:
            raise CheckpointError(f"{name} holds tensor {_short(tensor_name, 60)}, which a {blocks}-block Llama "
                                  "does not have")
        if tensor.dims != shape:
            raise CheckpointError(f"{name}: tensor {_short(tensor_name, 60)} has shape {list(tensor.dims)} but the "
                                  f"metadata implies {list(shape)}")
    return vocab


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's byte-to-character table: byte-level vocabularies spell every token in it."""
    kept = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, extra = {}, 0
    for byte in range(256):
        if byte in kept:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def _check_tokenizer(meta: dict, types: dict, name: str, vocab: int) -> None:
    model = meta.get("tokenizer.ggml.model")
    if model is None:
        raise CheckpointError(f"{name} has no tokenizer.ggml.model; a Llama GGUF file carries its tokenizer")
    if model not in TOKENIZER_MODELS:
        raise CheckpointError(f"{name}: tokenizer.ggml.model is {_short(model)}; "
                              f"{' and '.join(map(repr, TOKENIZER_MODELS))} are read")
    tokens = meta.get("tokenizer.ggml.tokens")
    if tokens is None:
        raise CheckpointError(f"{name} has no tokenizer.ggml.tokens; a Llama GGUF file carries its vocabulary")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise CheckpointError(f"{name}: tokenizer.ggml.tokens is not an array of strings")
    if len(tokens) != vocab:
        raise CheckpointError(f"{name}: tokenizer.ggml.tokens holds {len(tokens):,} tokens but token_embd.weight "
                              f"has {vocab:,} rows")
    for key, kinds in (("tokenizer.ggml.scores", (6, 12)), ("tokenizer.ggml.token_type", _INTS)):
        values = meta.get(key)
        if values is None:
            if key == "tokenizer.ggml.scores" and model == "llama":
                raise CheckpointError(f"{name} has no tokenizer.ggml.scores, which a 'llama' tokenizer needs")
            continue
        if not isinstance(values, list) or len(values) != vocab:
            count = len(values) if isinstance(values, list) else 1
            raise CheckpointError(f"{name}: {key} holds {count:,} values for {vocab:,} tokens")
        if key == "tokenizer.ggml.scores" and not all(math.isfinite(v) for v in values):
            raise CheckpointError(f"{name}: {key} holds a value that is not a finite number")
    for key, value in meta.items():
        if key.startswith("tokenizer.ggml.") and key.endswith("_token_id"):
            if types.get(key) not in _INTS or not 0 <= value < vocab:
                raise CheckpointError(f"{name}: {key} is {_short(value)}; the vocabulary has {vocab:,} tokens")
        elif key.startswith("tokenizer.ggml.add_") and types.get(key) != 7:
            raise CheckpointError(f"{name}: {key} is {_short(value)}; it must be true or false")
    merges = meta.get("tokenizer.ggml.merges")
    if merges is not None:
        _check_merges(merges, tokens, model, name)


def _check_merges(merges, tokens: list[str], model: str, name: str) -> None:
    """Each merge is two tokens separated by one space, both and their join in the vocabulary (the BPE
    tokenizer both loaders build refuses anything else, with a traceback)."""
    if not isinstance(merges, list) or not all(isinstance(m, str) for m in merges):
        raise CheckpointError(f"{name}: tokenizer.ggml.merges is not an array of strings")
    if model == "gpt2":  # transformers spells a byte-level token outside GPT-2's alphabet in it
        table = _byte_alphabet()
        alphabet = set(table.values())
        known = {t if set(t) <= alphabet else "".join(table[b] for b in t.encode("utf-8")) for t in tokens}
    else:
        known = set(tokens)
    for index, merge in enumerate(merges):
        parts = merge.split(" ")
        if len(parts) != 2 or not all(parts):
            raise CheckpointError(f"{name}: tokenizer.ggml.merges entry {index:,} ({_short(merge)}) is not two tokens "
                                  "separated by one space")
        for token in (parts[0], parts[1], parts[0] + parts[1]):
            if token not in known:
                raise CheckpointError(f"{name}: tokenizer.ggml.merges entry {index:,} names {_short(token)}, which "
                                      "is not in tokenizer.ggml.tokens")


def _open_regular(path: Path, name: str) -> int:
    size = capped_size(path, MAX_HEADER_BYTES + BYTES_PER_PARAM * max_params(), name, limit_of=" for a GGUF file",
                       hint=" (GEMINI_MAX_PARAMS changes it)")
    if size == 0:
        raise CheckpointError(f"{name} is empty; it is not a GGUF file")
    return size


def check_gguf(path, label: str | None = None, reader: bool = True) -> CheckedGGUF:
    """``path`` checked as a Llama GGUF (see the module's docstring); ``label`` names it in messages (default:
    the file's name). ``reader``: also parse it with gguf-py, which must agree (the result's ``reader``)."""
    path = Path(path)
    name = label or path.name
    size = _open_regular(path, name)
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if size < 4 or data[:4] != b"GGUF":
                raise CheckpointError(f"{name} is not a GGUF file (it does not start with the bytes 'GGUF')")
            meta, types, tensors, alignment, data_start = _walk(data, size)
            by_name = _check_placement(tensors, data_start, size, alignment)
    except _Refused as exc:
        raise CheckpointError(f"{name} is not a readable Llama GGUF file: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"{name} cannot be read ({exc.strerror or type(exc).__name__})") from None
    sizes = _llama_sizes(meta, types, name)
    vocab = _check_tensors(by_name, sizes, name)
    _check_tokenizer(meta, types, name, vocab)
    checked = CheckedGGUF(path, meta, by_name, sizes)
    if reader:
        checked.reader = _gguf_py_agrees(path, name, by_name, data_start)
    return checked


def _gguf_py_agrees(path: Path, name: str, tensors: dict[str, Tensor], data_start: int):
    """gguf-py's reader over the same (now bounded) file; a file two parsers read differently is refused."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        seen = {t.name: (t.tensor_type.name, tuple(int(d) for d in t.shape), int(t.data_offset))
                for t in reader.tensors}
    except Exception as exc:  # any failure of the second parser is the file's problem
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise CheckpointError(f"{name} is not a readable Llama GGUF file ({type(exc).__name__}: {first})") from None
    ours = {t.name: (t.type_name, t.dims, data_start + t.offset) for t in tensors.values()}
    if seen != ours:
        raise CheckpointError(f"{name} is not a readable Llama GGUF file: gguf-py reads its tensor table differently")
    return reader
