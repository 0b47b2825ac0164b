"""``hf/``: a plain transformers folder (dequantized float) that loads without gemini."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from gemini_core.checkpoint.format import ONNX_CHECK_BATCH, _quiet
from gemini_core.errors import GeminiError
from gemini_core.scenarios.hf_models import self_attention_modules


def _hf_module(model: nn.Module) -> nn.Module:
    hf = getattr(model, "hf", None)
    if hf is None or not hasattr(hf, "config"):
        raise GeminiError("--format hf needs a transformers model (the text scenario's HFClassifier)")
    return hf


def hf_state_and_config(stored_model: nn.Module):
    """A stock-config state dict and config for a head/FFN-pruned BERT-family model.

    A stock BERT config fixes the head size to hidden / heads, so removed heads cannot be left
    out: they come back as all-zero heads (zero query, key, value and zero output columns),
    which add exactly nothing; the FFN width, the same in every layer, goes into the config.
    """
    hf = _hf_module(stored_model)
    config = copy.deepcopy(hf.config)
    names = {id(m): n for n, m in hf.named_modules()}
    state = {k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
             for k, v in hf.state_dict().items()}
    widths = {n: m.out_features for n, m in hf.named_modules()
              if isinstance(m, nn.Linear) and n.endswith("intermediate.dense")}
    if len(set(widths.values())) > 1:
        detail = ", ".join(f"{n.split('.intermediate')[0]}: {w}" for n, w in widths.items())
        raise GeminiError(f"--format hf needs the same FFN width in every layer (a stock config has one "
                          f"intermediate_size); this model's differ ({detail}). Use the gemini or onnx format")
    if widths:
        config.intermediate_size = int(next(iter(widths.values())))
    embeddings = hf.get_input_embeddings()
    if embeddings is not None and embeddings.embedding_dim != config.hidden_size:
        raise GeminiError("--format hf cannot express a model whose hidden size was pruned")
    heads_kept = {}
    for attention in self_attention_modules(hf):
        name = names[id(attention)]
        head_size = attention.attention_head_size
        full = config.num_attention_heads * head_size
        kept = attention.query.out_features
        heads_kept[name] = kept // head_size
        if kept == full:
            continue
        if not name.endswith(".self"):
            raise GeminiError(f"--format hf: cannot find the output projection of {name}")
        out_name = name[: -len(".self")] + ".output.dense"
        for proj in ("query", "key", "value"):
            weight, bias = state[f"{name}.{proj}.weight"], state.get(f"{name}.{proj}.bias")
            state[f"{name}.{proj}.weight"] = torch.cat([weight, weight.new_zeros(full - kept, weight.shape[1])])
            if bias is not None:
                state[f"{name}.{proj}.bias"] = torch.cat([bias, bias.new_zeros(full - kept)])
        weight = state[f"{out_name}.weight"]
        state[f"{out_name}.weight"] = torch.cat([weight, weight.new_zeros(weight.shape[0], full - kept)], dim=1)
    return state, config, heads_kept


def write_hf(stored_model: nn.Module, folder: Path, scenario=None) -> dict:
    """``save_pretrained`` folder (fp32, dequantized) that plain transformers loads; checked by reloading."""
    from transformers import AutoModelForSequenceClassification

    state, config, heads_kept = hf_state_and_config(stored_model)
    with _quiet():
        model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=False).float().eval()
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if "position_ids" not in k]
        if missing or unexpected:
            raise GeminiError(f"--format hf: weights do not fit a stock {type(model).__name__} "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        model.save_pretrained(str(folder), safe_serialization=True)
        tokenizer = getattr(scenario, "tokenizer", None)
        if callable(tokenizer):
            tokenizer().save_pretrained(str(folder))
        check = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True,
                                                                   trust_remote_code=False).eval()
    info = {"folder": "hf", "intermediate_size": getattr(config, "intermediate_size", None),
            "num_attention_heads": config.num_attention_heads, "heads_kept": heads_kept,
            "note": "removed attention heads are stored as all-zero heads (a stock config cannot drop them)"}
    if scenario is not None:
        inputs = scenario.splits.test.first(min(ONNX_CHECK_BATCH, len(scenario.splits.test))).inputs
        with torch.no_grad():
            ours = stored_model.eval()(**inputs).float()
            theirs = check(**inputs).logits.float()
        info["max_abs_diff_vs_stored_model"] = float((ours - theirs).abs().max())
    return info
