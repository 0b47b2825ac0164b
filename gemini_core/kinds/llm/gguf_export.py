"""Write a Llama-architecture causal LM as a GGUF file with the ``gguf`` package, in the layout
llama.cpp's converter writes, so transformers' GGUF loader (and llama.cpp) read it back.

Storage types: f32 (reloads bit-exactly), f16, or the block formats q8_0 / q4_0 / q4_1 (32
weights per block). In a q4_0 / q4_1 file a weight already on a 4-bit grid (a GPTQ, RTN or AWQ point's,
groups of 32 or a multiple) is written with its own codes (``grid_blocks``: q4_0 holds a symmetric grid,
q4_1 a symmetric or asymmetric one), so the file holds the weights that were measured, up to the f16
scales every runtime stores; any other weight is quantized by gguf-py. The token embedding, when it is
off the grid, goes to q8_0 there: untied, decoding reads one row of it per token (its size costs no
speed); tied, it is also the LM head, kept at 8 bits as OpenVINO keeps it (4-bit rounding of SmolLM2's
head alone costs 14.5% perplexity; a calibrated 4-bit head is the quantizer's job, ``quantize.py``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm.calibrate import linear_layers
from gemini_core.kinds.llm.grids import asym_grid_codes, grid_codes
from gemini_core.techniques.grid import QuantGrid

ARCH = "llama"
TYPES = ("f32", "f16", "q8_0", "q4_0", "q4_1")
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5
BLOCK_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
               "post_attention_layernorm": "ffn_norm"}


def _permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp stores q/k rows interleaved for its rotary kernel; transformers undoes this on load.
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensor_name(hf_name: str) -> str | None:
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    parts = hf_name.split(".")
    if parts[:2] == ["model", "layers"] and parts[-1] == "weight":
        mapped = BLOCK_NAMES.get(".".join(parts[3:-1]))
        if mapped:
            return f"blk.{parts[2]}.{mapped}.weight"
    return None


def _tokenizer_fields(tokenizer, vocab_size: int) -> dict:
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    model = backend["model"]
    if model.get("type") != "BPE":
        raise ConfigError(f"GGUF export supports byte-level BPE tokenizers, not {model.get('type')}")
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    special = {a["content"] for a in backend.get("added_tokens", []) if a.get("special")}
    added = {a["content"] for a in backend.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(vocab_size):
        token = by_id.get(i, f"[PAD{i}]")
        tokens.append(token)
        types.append(TOKEN_CONTROL if token in special else TOKEN_USER_DEFINED if token in added
                     else TOKEN_UNUSED if i not in by_id else TOKEN_NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return {"tokens": tokens, "types": types, "merges": merges}


def _add_metadata(writer, config, tokenizer, name: str) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    fields = _tokenizer_fields(tokenizer, config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(fields["tokens"])
    writer.add_token_types(fields["types"])
    writer.add_token_merges(fields["merges"])
    for key, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                     ("unk_token_id", writer.add_unk_token_id), ("pad_token_id", writer.add_pad_token_id)):
        value = getattr(tokenizer, key, None)
        if isinstance(value, int):
            add(value)
    writer.add_add_bos_token(False)


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return params.get("rope_theta", getattr(config, "rope_theta", 10000.0))


BLOCK = 32  # weights per q4_0 / q4_1 / q8_0 block
GRID_TYPES = ("q4_0", "q4_1")


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    # ggml's q4 layout: byte j holds weight j (low nibble) and weight j + 16 (high nibble) of its block
    return (q[..., :16] | (q[..., 16:] << 4)).astype(np.uint8)


def grid_blocks(array: np.ndarray, qtype: str) -> np.ndarray | None:
    """``array`` (rows x columns) in ``qtype``'s blocks with the codes of the 4-bit grid it sits on, or
    None when it is on no 4-bit grid with groups of 32 (or a multiple: one scale for several blocks).
    q4_0 block: f16 scale d, 16 bytes of codes q in 0..15, weight = d * (q - 8). q4_1 block: f16 d and
    f16 offset m, weight = d * q + m (a symmetric grid is m = -8 d)."""
    rows, cols = array.shape
    if qtype not in GRID_TYPES or cols % BLOCK:
        return None
    for group in sorted({g for g in (BLOCK, 64, 96, 128, 192, 256, cols) if cols % g == 0 and g % BLOCK == 0}):
        grid = QuantGrid(4, "group", group)  # the file's blocks say nothing of the point's grid: each is tried
        codes, scale, missed = grid_codes(array, grid)
        zero = np.full_like(scale, -grid.qmin)
        if missed:
            if qtype == "q4_0":
                continue
            codes, scale, zero, missed = asym_grid_codes(array, grid)
            if missed:
                continue
            codes = codes.astype(np.int16) - zero  # codes relative to the zero point, as for the symmetric grid
        per_block = group // BLOCK
        q = (codes.astype(np.int16) + zero.astype(np.int16) if qtype == "q4_1" else codes.astype(np.int16) + 8)
        q = q.reshape(rows, cols // BLOCK, BLOCK).astype(np.uint8)
        d = np.repeat(scale.reshape(rows, -1), per_block, axis=1).astype(np.float16)
        parts = [d.view(np.uint8).reshape(rows, -1, 2)]
        if qtype == "q4_1":
            m = np.repeat((-scale * zero).reshape(rows, -1), per_block, axis=1).astype(np.float16)
            parts.append(m.view(np.uint8).reshape(rows, -1, 2))
        parts.append(_pack_nibbles(q))
        return np.concatenate(parts, axis=-1).reshape(rows, -1)
    return None


def unsupported(model) -> str | None:
    """Why this writer cannot write ``model`` (one line), or None."""
    config = model.config
    if getattr(config, "model_type", None) not in ("llama", "mistral"):
        return f"GGUF export supports Llama-architecture models, not {getattr(config, 'model_type', None)!r}"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "GGUF export of Llama models with bias terms is not supported"
    return None


def grid_type(model, grid: QuantGrid | int | None, group_size: int | None = None) -> str:
    """The GGUF type that holds a point's weights as measured (``auto``) on its ``grid`` (a QuantGrid, or bits
    and ``group_size``; None: float weights): q4_0 for a symmetric 4-bit grid in groups of 32 or a multiple,
    q4_1 for an asymmetric one, q8_0 for 8 bits (re-quantized in 32-weight blocks: finer than the point's own
    grid), f32 otherwise (exact: no GGUF block type holds 2 or 3 bits here). Whether the weights are symmetric
    is read from the first Linear, not from the grid's flag: the file holds what the weights are."""
    grid = QuantGrid.coerce(grid, group_size)
    if grid is not None and grid.bits == 8:
        return "q8_0"
    if grid is None or grid.bits != 4 or grid.granularity == "tensor" or (grid.group_size or 0) % BLOCK:
        return "f32"
    first = next(iter(linear_layers(model).values())).weight.detach().float().numpy()
    return "q4_0" if grid_codes(first, grid)[2] == 0 else "q4_1"


def _encode(array: np.ndarray, qtype: str, off_grid: str | None = None):
    """(data, raw type) of one tensor; ``off_grid``: the type for a 2-D weight on no grid (default qtype)."""
    from gguf import GGMLQuantizationType, quants

    if array.ndim == 1 or qtype == "f32":
        return array.astype(np.float32), None
    if qtype == "f16":
        return array.astype(np.float16), None
    if array.shape[-1] % BLOCK:
        return array.astype(np.float16), None  # block formats need rows that are multiples of 32
    blocks = grid_blocks(array, qtype)
    if blocks is not None:
        return blocks, GGMLQuantizationType[qtype.upper()]
    kind = GGMLQuantizationType[(off_grid or qtype).upper()]
    return quants.quantize(array.astype(np.float32), kind), kind


def export_gguf(model, tokenizer, path, qtype: str = "f32", name: str = "gemini-compressed") -> Path:
    """Write ``model`` (a Llama-family causal LM) to ``path``; returns the path."""
    import gguf

    if qtype not in TYPES:
        raise ConfigError(f"GGUF type must be one of {', '.join(TYPES)}, not {qtype!r}")
    config = model.config
    reason = unsupported(model)
    if reason:
        raise ConfigError(reason)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), ARCH)
    _add_metadata(writer, config, tokenizer, name)
    state = {k: v for k, v in model.state_dict().items()}
    tied = getattr(config, "tie_word_embeddings", False)
    if tied:
        state.pop("lm_head.weight", None)  # no output.weight: the loader ties it again
    for hf_name, tensor in state.items():
        gname = gguf_tensor_name(hf_name)
        if gname is None:
            if "rotary_emb" in hf_name:
                continue
            raise ConfigError(f"no GGUF name for tensor {hf_name}")
        array = tensor.detach().to(torch.float32).numpy()
        if gname.endswith("attn_q.weight"):
            array = _permute_rope(array, config.num_attention_heads)
        elif gname.endswith("attn_k.weight"):
            array = _permute_rope(array, config.num_key_value_heads)
        embedding = gname == "token_embd.weight"
        data, raw = _encode(array, qtype, "q8_0" if embedding and qtype in GRID_TYPES else None)
        writer.add_tensor(gname, data, raw_dtype=raw)  # block data: gguf-py derives the shape from its bytes
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
