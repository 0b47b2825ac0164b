"""The causal-LM kind, described for every door without torch: perplexity on held-out text is its quality
(lower is better), its reference is the uncompressed model on any execution, and its own figures are the
prefill and decode speeds and the bandwidth limits."""
from __future__ import annotations

from collections.abc import Mapping

from gemini_core.kinds.registry import Column, KindInfo, register_kind

# A point's config that is the uncompressed reference (any execution).
REFERENCE = {"quant_method": "none", "bits": 32, "prune_method": "none", "sparsity": 0.0,
             "pattern": "unstructured", "mlp_ratio": 0.0, "head_ratio": 0.0, "recovery": "none",
             "recovery_steps": 0}


def config_columns(cfg: Mapping) -> dict:
    """The config in the table's shared columns (so groupings and colours work for it too); its own fields
    are kept beside them (``quant_method``, ``group_size``, ``sparsity``, ``pattern``, ...)."""
    structured = bool(cfg.get("mlp_ratio") or cfg.get("head_ratio"))
    method = cfg.get("prune_method", "none")
    if structured:
        method = "structured" if method == "none" else f"structured+{method}"
    ratio = 0.5 if cfg.get("pattern") == "2:4" else float(cfg.get("sparsity") or 0)
    ratio = ratio or float(cfg.get("mlp_ratio") or 0) or float(cfg.get("head_ratio") or 0)
    group = cfg.get("group_size")
    return {"prune_method": f"{method} 2:4" if cfg.get("pattern") == "2:4" else method, "prune_ratio": ratio,
            "finetune_steps": cfg.get("recovery_steps", 0), "bits": cfg.get("bits", 32),
            "granularity": f"group-{group}" if group else "per-channel", "execution": cfg.get("execution", "torch"),
            "recovery": cfg.get("recovery", "none"), "per_layer": False,
            "is_llm_reference": all(cfg.get(k) == v for k, v in REFERENCE.items()),
            **{k: cfg.get(k) for k in ("quant_method", "group_size", "sparsity", "pattern", "mlp_ratio", "head_ratio")}}


def is_reference(row: Mapping) -> bool:
    return bool(row.get("is_llm_reference"))


INFO = register_kind(KindInfo(
    name="llm", label="causal language model (perplexity on held-out text)", sweep_noun="an LLM sweep",
    model_noun="the LLM", quality_metric="perplexity",
    engine_module="gemini_core.kinds.llm.engine", config_columns=config_columns, is_reference=is_reference,
    latency_heading="prefill p50 of one sequence (ms)", size_heading="bytes written",
    extra_columns=(Column("decode_tokens_per_s", "decode (tokens/s)", "{:.1f}"),
                   Column("prefill_ms_p50", "prefill p50 (ms)", "{:.1f}"),
                   Column("accuracy", "zero-shot accuracy (%)", "{:.1f}", 100.0)),
    scenarios=("llm",), scenario_module="gemini_core.kinds.llm.scenario", recipe_section="llm",
    # perplexity (lower is better) with its window, prefill and decode speed
    cli_table_fields=("point_id", "label", "perplexity", "context_len", "stride", "tokens_scored", "prefill_ms_p50",
                      "prefill_ms_p10", "prefill_ms_p90", "decode_tokens_per_s", "size_bytes", "threads",
                      "load_avg_1m", "warnings")))
