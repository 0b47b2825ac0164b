"""The recommender kind, described for every door without torch: NDCG@10 of a held-out interaction per user
(ranked among 99 sampled items, higher is better) is its quality; its reference is the uncompressed model
(32-bit tables, nothing pruned, no recovery); its own figures are HR@10 and the bytes of its embedding tables.

The point config (embedding bits, row pruning, tower pruning, recovery) belongs to the kind's engine; the
fields read here are the ones that engine is expected to write, each with the value of the uncompressed model
as its default.
"""
from __future__ import annotations

from collections.abc import Mapping

from gemini_core.kinds.registry import Column, KindInfo, register_kind

# A point's config that is the uncompressed reference (any execution).
REFERENCE = {"embedding_bits": 32, "row_prune_ratio": 0.0, "tower_prune_ratio": 0.0, "recovery_steps": 0}


def _number(value, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def config_columns(cfg: Mapping) -> dict:
    """The config in the table's shared columns (groupings and colours work for it too); its own fields are
    kept beside them."""
    rows, tower = _number(cfg.get("row_prune_ratio"), 0.0), _number(cfg.get("tower_prune_ratio"), 0.0)
    parts = [name for name, ratio in (("rows", rows), ("tower", tower)) if ratio > 0]
    bits = int(_number(cfg.get("embedding_bits"), 32))
    return {"prune_method": "+".join(parts) or "none", "prune_ratio": max(rows, tower),
            "finetune_steps": int(_number(cfg.get("recovery_steps"), 0)), "bits": bits,
            "granularity": cfg.get("granularity", "per-row"), "execution": cfg.get("execution", "torch"),
            "recovery": cfg.get("recovery", "none"), "per_layer": False,
            "is_recommend_reference": all(_number(cfg.get(k), v) == v for k, v in REFERENCE.items()),
            **{k: cfg.get(k) for k in ("embedding_bits", "row_prune_ratio", "tower_prune_ratio", "model")}}


def is_reference(row: Mapping) -> bool:
    return bool(row.get("is_recommend_reference"))


INFO = register_kind(KindInfo(
    name="recommend", label="recommender (ranking quality on held-out interactions)",
    sweep_noun="a recommender sweep", model_noun="a recommender", quality_metric="ndcg@10",
    engine_module="gemini_core.kinds.recommend.engine", config_columns=config_columns,
    is_reference=is_reference, latency_heading="scoring p50 of 1,000 candidates (ms)",
    extra_columns=(Column("hr_at_10", "HR@10 (%)", "{:.1f}", 100.0),
                   Column("recall_at_20", "Recall@20 (%)", "{:.1f}", 100.0),
                   Column("embedding_bytes", "embedding bytes", "{:,.0f}")),
    scenarios=("recommend",), scenario_module="gemini_core.kinds.recommend.scenario",
    trains_baseline=True, recipe_section="recommend",
    cli_table_fields=("point_id", "label", "ndcg_at_10", "hr_at_10", "recall_at_20", "latency_ms_p50",
                      "embedding_bytes", "size_bytes", "threads", "warnings")))
