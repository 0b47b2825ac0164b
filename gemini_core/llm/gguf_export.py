"""Write a Llama-architecture causal LM as a GGUF file with the ``gguf`` package, in the layout
llama.cpp's converter writes, so transformers' GGUF loader (and llama.cpp) read it back.

Storage types: f32 (reloads bit-exactly), f16, or the block formats q8_0 / q4_0 / q4_1 (32
weights per block, quantized here again by gguf-py: a compressed model's own grid is not kept).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from gemini_core.errors import ConfigError

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


def _encode(array: np.ndarray, qtype: str):
    from gguf import GGMLQuantizationType, quants

    if array.ndim == 1 or qtype == "f32":
        return array.astype(np.float32), None
    if qtype == "f16":
        return array.astype(np.float16), None
    kind = GGMLQuantizationType[qtype.upper()]
    if array.shape[-1] % 32:
        return array.astype(np.float16), None  # block formats need rows that are multiples of 32
    return quants.quantize(array.astype(np.float32), kind), kind


def export_gguf(model, tokenizer, path, qtype: str = "f32", name: str = "gemini-compressed") -> Path:
    """Write ``model`` (a Llama-family causal LM) to ``path``; returns the path."""
    import gguf

    if qtype not in TYPES:
        raise ConfigError(f"GGUF type must be one of {', '.join(TYPES)}, not {qtype!r}")
    config = model.config
    if getattr(config, "model_type", None) not in ("llama", "mistral"):
        raise ConfigError(f"GGUF export supports Llama-architecture models, not {config.model_type!r}")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ConfigError("GGUF export of Llama models with bias terms is not supported")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), ARCH)
    _add_metadata(writer, config, tokenizer, name)
    state = {k: v for k, v in model.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
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
        data, raw = _encode(array, qtype)
        writer.add_tensor(gname, data, raw_dtype=raw)  # block data: gguf-py derives the shape from its bytes
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
