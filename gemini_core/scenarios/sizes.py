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
"""
from __future__ import annotations

import math
import re
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
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
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
