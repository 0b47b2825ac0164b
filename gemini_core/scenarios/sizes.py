"""Sizes of a transformer from someone else's ``config.json`` (or recipe), checked before any module is built.

Three checks that need neither a model nor the meta device (some constructors compute with their
tensors, e.g. call ``.item()``, and cannot be built there):

* ``validate_sizes``: every size is a whole number between 1 and a bound (no strings, no
  negatives, no 100,000 layers, no empty vocabulary);
* ``estimate_params``: an arithmetic estimate of the parameter count from those sizes, against
  ``GEMINI_MAX_PARAMS``;
* ``header_shapes`` + ``check_header_params`` + ``check_config_fits``: the tensor shapes in the
  safetensors header (the header only; no tensor is read) are counted against the same cap and
  compared with what the config says (vocabulary, hidden size, FFN width, layer count), so a
  config that does not describe its weights is one line naming the field.

And the files around them, read before transformers reads them (``read_json_file``,
``check_tokenizer_files``): each under a size cap before a byte is read, UTF-8, valid JSON without
NaN or Infinity, nested no deeper than any real config or tokenizer is, so that a hostile file is
one line rather than a traceback, a recursion error or a gigabyte in memory.
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path

from gemini_core.errors import CheckpointError
from gemini_core.scenarios.registry import max_params

# Upper bounds far above any model the cap allows; they stop absurd values before any arithmetic.
SIZE_BOUNDS = {
    "hidden_size": 1 << 17, "num_hidden_layers": 4096, "intermediate_size": 1 << 19, "vocab_size": 1 << 22,
    "num_attention_heads": 4096, "num_key_value_heads": 4096, "max_position_embeddings": 1 << 22,
    "head_dim": 1 << 14, "embedding_size": 1 << 17,
}
# Aliases some model types use for the same sizes (DistilBERT, GPT-2).
ALIASES = {"dim": "hidden_size", "n_layers": "num_hidden_layers", "hidden_dim": "intermediate_size",
           "n_heads": "num_attention_heads", "n_embd": "hidden_size", "n_layer": "num_hidden_layers",
           "n_head": "num_attention_heads", "n_inner": "intermediate_size", "n_positions": "max_position_embeddings"}


def validate_sizes(config: dict, where: str) -> dict[str, int]:
    """The sizes a config names, each a whole number from 1 to its bound; CheckpointError naming the field."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{where} is not a JSON object")
    sizes = {}
    for key, value in config.items():
        name = ALIASES.get(key, key)
        if name not in SIZE_BOUNDS or value is None:
            continue
        bound = SIZE_BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= bound:
            raise CheckpointError(f"{where}: {key} is {value!r}; it must be a whole number from 1 to {bound:,}")
        sizes[name] = value
    return sizes


def estimate_params(sizes: dict[str, int], gated_ffn: bool = False) -> int:
    """Parameters of an encoder or decoder from its sizes (an estimate: embeddings + layers).

    ``gated_ffn``: decoders such as Llama or SmolLM2 have three FFN matrices per layer, BERT two.
    """
    hidden, layers = sizes.get("hidden_size", 1), sizes.get("num_hidden_layers", 1)
    ffn = sizes.get("intermediate_size", 4 * hidden)
    per_layer = 4 * hidden * hidden + (3 if gated_ffn else 2) * hidden * ffn
    return layers * per_layer + sizes.get("vocab_size", 1) * sizes.get("embedding_size", hidden)


def check_estimate(sizes: dict[str, int], where: str, gated_ffn: bool = False) -> int:
    estimate = estimate_params(sizes, gated_ffn)
    if estimate > max_params():
        raise CheckpointError(f"{where} describes a model of about {estimate:,} parameters (estimate), above the "
                              f"limit of {max_params():,} (GEMINI_MAX_PARAMS changes it)")
    return estimate


def header_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header (no tensor is read)."""
    return {name: shape for name, (_dtype, shape) in header_entries(weights).items()}


def header_entries(weights: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (safetensors dtype such as 'F32', shape) from a safetensors file's header."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            entries = {}
            for name in handle.keys():
                part = handle.get_slice(name)
                entries[name] = (str(part.get_dtype()), tuple(part.get_shape()))
            return entries
    except Exception as exc:  # a truncated or damaged file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{weights.name} in {str(weights.parent)!r} is damaged or truncated: "
                              f"{first[:200]}") from None


def check_header_params(shapes: dict[str, tuple[int, ...]], what: str) -> int:
    """The parameters the header's tensors hold, refused above ``GEMINI_MAX_PARAMS``."""
    count = sum(math.prod(shape) for shape in shapes.values())
    if count > max_params():
        raise CheckpointError(f"{what}: {count:,} parameters in the header, above the limit of {max_params():,} "
                              "(GEMINI_MAX_PARAMS changes it)")
    return count


_EMBEDDING = re.compile(r"(^|\.)(word_embeddings|embed_tokens|wte)\.weight$")
_QUERY = re.compile(r"(^|\.)(attention\.self\.query|self_attn\.q_proj|attention\.q_lin)\.weight$")
_FFN_IN = re.compile(r"(^|\.)(intermediate\.dense|mlp\.up_proj|ffn\.lin1)\.weight$")
_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h)\.(\d+)\.")


def check_config_fits(sizes: dict[str, int], shapes: dict[str, tuple[int, ...]], where: str, file: str,
                      pruned: bool = False) -> None:
    """CheckpointError naming the config field when the header's shapes contradict it.

    Vocabulary and layer count must match exactly; with ``pruned`` (a structurally pruned export)
    hidden and FFN widths may only be smaller than the config says, never larger.
    """
    def fail(field: str, tensor: str, shape) -> None:
        raise CheckpointError(f"{where}: {field} is {sizes[field]:,} but {file} holds {tensor} of shape "
                              f"{list(shape)}; the config does not describe these weights")

    def fits(actual: int, expected: int) -> bool:
        return actual <= expected if pruned else actual == expected

    hidden, vocab = sizes.get("hidden_size"), sizes.get("vocab_size")
    width = sizes.get("embedding_size", hidden)
    for name, shape in shapes.items():
        if len(shape) != 2:
            continue
        if _EMBEDDING.search(name):
            if vocab is not None and shape[0] != vocab:
                fail("vocab_size", name, shape)
            if width is not None and not fits(shape[1], width):
                fail("embedding_size" if "embedding_size" in sizes else "hidden_size", name, shape)
        elif _QUERY.search(name) and hidden is not None and not fits(shape[1], hidden):
            fail("hidden_size", name, shape)
        elif _FFN_IN.search(name):
            if sizes.get("intermediate_size") is not None and not fits(shape[0], sizes["intermediate_size"]):
                fail("intermediate_size", name, shape)
            if hidden is not None and not fits(shape[1], hidden):
                fail("hidden_size", name, shape)
    layers = {int(m.group(1)) for name in shapes for m in [_LAYER.search(name)] if m}
    if layers and sizes.get("num_hidden_layers") is not None and max(layers) + 1 != sizes["num_hidden_layers"]:
        raise CheckpointError(f"{where}: num_hidden_layers is {sizes['num_hidden_layers']:,} but {file} holds "
                              f"{max(layers) + 1:,} layers; the config does not describe these weights")


# -- the JSON and tokenizer files of a model folder -------------------------------------------------------
MAX_CONFIG_BYTES = 1 << 20  # config.json, generation_config.json: a real one is a few KB
MAX_TOKENIZER_BYTES = 64 << 20  # the largest common tokenizer.json (Gemma's) is about 34 MB
MAX_JSON_DEPTH = 32  # a tokenizer.json nests 6 levels, a config 3 or 4
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.json", "chat_template.jinja", "vocab.json", "vocab.txt", "merges.txt",
                   "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")
JSON_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                        "chat_template.json", "vocab.json")


class _NotANumber(ValueError):
    pass


def _no_constant(name: str):
    raise _NotANumber(name)


def capped_size(path: Path, cap: int, where: str | None = None, limit_of: str = "", hint: str = "") -> int:
    """The size of a regular file, refused above ``cap`` before anything is read (and a FIFO or device is
    never opened). ``limit_of`` and ``hint`` complete the refusal: "the limit{limit_of} is N MB{hint}"."""
    where = where or str(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise CheckpointError(f"{where} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{where} is not a regular file")
    if info.st_size > cap:
        raise CheckpointError(f"{where} is {info.st_size / 1e6:,.1f} MB; the limit{limit_of} is {cap / 1e6:,.1f} MB"
                              f"{hint}")
    return info.st_size


def json_depth(value, limit: int) -> int:
    """How deep ``value`` nests, counted without recursion and given up past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def read_json_file(path: Path, cap: int = MAX_CONFIG_BYTES, where: str | None = None):
    """A JSON file from someone else's folder: size-capped before reading, UTF-8, valid JSON without NaN or
    Infinity, nested at most MAX_JSON_DEPTH levels. CheckpointError naming the file otherwise."""
    path = Path(path)
    where = where or str(path)
    capped_size(path, cap, where)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{where} is not UTF-8 text") from None
    except OSError as exc:
        raise CheckpointError(f"{where} cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except _NotANumber as exc:
        raise CheckpointError(f"{where} holds {exc}, which is not a number JSON allows") from None
    except RecursionError:
        raise CheckpointError(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{where} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if json_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def read_json_object(path: Path, cap: int = MAX_CONFIG_BYTES, where: str | None = None) -> dict:
    where = where or str(path)
    value = read_json_file(path, cap, where)
    if not isinstance(value, dict):
        raise CheckpointError(f"{where} is not a JSON object")
    return value


def check_tokenizer_files(folder: Path, require_json: bool = False) -> None:
    """Every tokenizer file transformers may read from ``folder``: capped, JSON ones parsed (and objects),
    remote code refused, tokenizer.json readable by the tokenizers library (its own parser, in Rust, is
    given a file already known to be a bounded JSON object)."""
    folder = Path(folder)
    for name in TOKENIZER_FILES:
        path = folder / name
        if not path.exists():
            continue
        if name not in JSON_TOKENIZER_FILES:
            capped_size(path, MAX_TOKENIZER_BYTES)
            continue
        value = read_json_file(path, MAX_TOKENIZER_BYTES)
        if name != "vocab.json" and not isinstance(value, dict):
            raise CheckpointError(f"{path} is not a JSON object")
        if name == "tokenizer_config.json" and value.get("auto_map"):
            raise CheckpointError(f"{path} asks for remote code (auto_map); it is never run")
        if name == "tokenizer.json":
            _check_tokenizer_json(path, value)
    if require_json and not (folder / "tokenizer.json").is_file():
        raise CheckpointError(f"{folder} has no tokenizer.json; the tokenizer is read from its tokenizer.json "
                              "(no tokenizer code is run)")


def _check_tokenizer_json(path: Path, value: dict) -> None:
    from tokenizers import Tokenizer

    if not isinstance(value.get("model"), dict):
        raise CheckpointError(f"{path} is not a tokenizers file (it has no 'model' object)")
    try:
        Tokenizer.from_str(json.dumps(value))
    except Exception as exc:  # the tokenizers library's own refusal, whatever its type
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path} is not a tokenizer the tokenizers library can read: {first[:160]}") from None
