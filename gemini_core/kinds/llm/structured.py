"""Structured pruning of a Llama-family LM: whole MLP channels and whole key/value head groups.

Written directly rather than through torch-pruning: with grouped-query attention a removable unit
is one key/value head *with* the query heads that share it, and the pruned model must stay a
plain transformers model (same class, smaller config) so it saves and reloads as safetensors.
That needs the same count removed in every block, which is what this does.

Importance is Wanda-like, from calibration inputs: channel j of the MLP scores
||W_down[:, j]|| * ||a_j|| (a = the down projection's input); a head group scores the same sum
over the o_proj input columns of its query heads.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm.calibrate import compress_sequentially


def _sliced(linear: nn.Linear, rows=None, cols=None) -> nn.Linear:
    w = linear.weight.data
    w = w[rows] if rows is not None else w
    w = w[:, cols] if cols is not None else w
    out = nn.Linear(w.shape[1], w.shape[0], bias=linear.bias is not None, dtype=w.dtype)
    out.weight.data.copy_(w)
    if linear.bias is not None:
        out.bias.data.copy_(linear.bias.data[rows] if rows is not None else linear.bias.data)
    return out


def _keep(scores: torch.Tensor, count: int) -> torch.Tensor:
    return torch.topk(scores, count).indices.sort().values


def kept_counts(config, mlp_ratio: float, head_ratio: float) -> tuple[int, int]:
    """Channels kept per MLP (a multiple of 8: other widths ran slower here) and KV groups kept."""
    for name, ratio in (("MLP", mlp_ratio), ("head", head_ratio)):
        if not 0 <= ratio < 1:
            raise ConfigError(f"{name} pruning ratio must be in [0, 1), not {ratio}")
    inter = config.intermediate_size
    channels = max(8, round(inter * (1 - mlp_ratio) / 8) * 8) if mlp_ratio else inter
    groups = max(1, round(config.num_key_value_heads * (1 - head_ratio)))
    return min(channels, inter), groups


def _prune_block(block, stats, channels: int, groups: int, config) -> None:
    mlp, attn = block.mlp, block.self_attn
    if channels < mlp.down_proj.in_features:
        act = stats["mlp.down_proj"].column_norm().float()
        keep = _keep(mlp.down_proj.weight.norm(dim=0) * act, channels)
        mlp.gate_proj, mlp.up_proj = _sliced(mlp.gate_proj, rows=keep), _sliced(mlp.up_proj, rows=keep)
        mlp.down_proj = _sliced(mlp.down_proj, cols=keep)
    n_kv = config.num_key_value_heads
    if groups < n_kv:
        head_dim = attn.head_dim
        per_group = config.num_attention_heads // n_kv
        col = attn.o_proj.weight.norm(dim=0) * stats["self_attn.o_proj"].column_norm().float()
        score = col.reshape(n_kv, per_group * head_dim).sum(1)
        kept = _keep(score, groups)
        kv_rows = torch.cat([torch.arange(g * head_dim, (g + 1) * head_dim) for g in kept.tolist()])
        span = per_group * head_dim
        q_rows = torch.cat([torch.arange(g * span, (g + 1) * span) for g in kept.tolist()])
        attn.q_proj, attn.o_proj = _sliced(attn.q_proj, rows=q_rows), _sliced(attn.o_proj, cols=q_rows)
        attn.k_proj, attn.v_proj = _sliced(attn.k_proj, rows=kv_rows), _sliced(attn.v_proj, rows=kv_rows)


def prune_structured(model, calib_ids: torch.Tensor, mlp_ratio: float = 0.0, head_ratio: float = 0.0) -> dict:
    """Remove MLP channels and KV head groups in place; the config is rewritten to match."""
    config = model.config
    if getattr(config, "model_type", None) not in ("llama", "mistral", "qwen2"):
        raise ConfigError(f"structured pruning supports Llama-like models, not {config.model_type!r}")
    channels, groups = kept_counts(config, mlp_ratio, head_ratio)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    before = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    blocks_done = []

    def per_block(index, _linears, stats):
        _prune_block(model.model.layers[index], stats, channels, groups, config)
        blocks_done.append(index)

    compress_sequentially(model, calib_ids, per_block, hessian=False)
    per_group = config.num_attention_heads // config.num_key_value_heads
    config.head_dim = head_dim  # no longer hidden_size / heads once heads are removed
    config.intermediate_size = channels
    config.num_key_value_heads = groups
    config.num_attention_heads = groups * per_group
    after = sum(p.numel() for p in model.parameters())
    return {"technique": "structured", "mlp_channels": channels, "kv_groups": groups,
            "attention_heads": groups * per_group, "parameters_before": before, "parameters_after": after,
            "blocks": len(blocks_done), "seconds": round(time.perf_counter() - start, 2)}
