"""The recommender kind, described for every door without torch: NDCG@10 of a held-out interaction per user
(ranked among 99 sampled items, higher is better) is its quality; its reference is the uncompressed model
(32-bit tables, nothing pruned, no recovery); its control is that model fine-tuned on the recovery budget the
structural points got; its own figures are HR@10, Recall@20 and the bytes of its embedding tables.

The point config (``kinds/recommend/compress.py``'s ``RecommendPointConfig``: embedding bits and hot rows,
rare-row, dimension and tower pruning, low rank, quotient-remainder, recovery) belongs to the kind's engine;
the fields read here are the ones it writes, each with the value of the uncompressed model as its default.

The baseline is trained through the kind's own training (cached by its engine, keyed by everything that
changes its weights) when a sweep or an analysis opens, so ``trains_baseline`` is False: the product's
baseline door trains classifiers, and the Model page draws this kind's own section.
"""
from __future__ import annotations

from collections.abc import Mapping

from gemini_core.kinds.registry import Column, KindInfo, register_kind

# A point's config that is the uncompressed reference (any execution).
REFERENCE = {"embedding_bits": 32, "hot_share": 0.0, "row_prune_ratio": 0.0, "dim_prune_ratio": 0.0, "rank": 0,
             "qr_divisor": 0, "tower_prune_ratio": 0.0, "recovery_steps": 0}
# what a point does to the model's structure: (config field, the table's name for it)
STRUCTURE = (("row_prune_ratio", "rows"), ("dim_prune_ratio", "dims"), ("rank", "rank"), ("qr_divisor", "qr"),
             ("tower_prune_ratio", "tower"))


def _number(value, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


# a library peer's precision (``peer_points.PEERS``) -> the bits its tables hold
PEER_BITS = {"torchrec-int8": 8, "torchrec-int4": 4}


def config_columns(cfg: Mapping) -> dict:
    """The config in the table's shared columns (groupings and colours work for it too); its own fields are
    kept beside them. A library peer's config (``peer``) is neither the reference nor the control."""
    if cfg.get("peer"):
        name = str(cfg["peer"])
        return {"prune_method": "none", "prune_ratio": 0.0, "finetune_steps": 0, "bits": PEER_BITS.get(name, 32),
                "granularity": "per-row" if name in PEER_BITS else "none", "execution": name.split("-")[0],
                "recovery": "none", "per_layer": False, "is_recommend_reference": False,
                "is_recommend_control": False, "peer_name": name}
    parts = [name for key, name in STRUCTURE if _number(cfg.get(key), 0.0) > 0]
    ratios = [_number(cfg.get(k), 0.0) for k in ("row_prune_ratio", "dim_prune_ratio", "tower_prune_ratio")]
    bits = int(_number(cfg.get("embedding_bits"), 32))
    steps = int(_number(cfg.get("recovery_steps"), 0))
    hot = _number(cfg.get("hot_share"), 0.0)
    unchanged = {k: _number(cfg.get(k), v) == v for k, v in REFERENCE.items()}
    return {"prune_method": "+".join(parts) or "none", "prune_ratio": max(ratios),
            "finetune_steps": steps, "bits": bits,
            "granularity": f"per-row, hot {hot:.0%} 8-bit" if hot > 0 else "per-row",
            "execution": cfg.get("execution", "torch"), "recovery": "finetune" if steps else "none",
            "per_layer": False,
            "is_recommend_reference": all(unchanged.values()),
            "is_recommend_control": steps > 0 and all(v for k, v in unchanged.items() if k != "recovery_steps"),
            **{k: cfg.get(k) for k in (*REFERENCE, "model")}}


def is_reference(row: Mapping) -> bool:
    return bool(row.get("is_recommend_reference"))


def is_control(row: Mapping) -> bool:
    return bool(row.get("is_recommend_control"))


INFO = register_kind(KindInfo(
    name="recommend", label="recommender (ranking quality on held-out interactions)",
    sweep_noun="a recommender sweep", model_noun="a recommender", quality_metric="ndcg@10",
    engine_module="gemini_core.kinds.recommend.engine", config_columns=config_columns,
    is_reference=is_reference, is_control=is_control, latency_heading="scoring p50 of 1,000 candidates (ms)",
    extra_columns=(Column("hr_at_10", "HR@10 (%)", "{:.1f}", 100.0),
                   Column("recall_at_20", "Recall@20 (%)", "{:.1f}", 100.0),
                   Column("embedding_bytes", "embedding bytes", "{:,.0f}")),
    scenarios=("recommend",), scenario_module="gemini_core.kinds.recommend.scenario",
    trains_baseline=False, recipe_section="recommend",
    cli_table_fields=("point_id", "label", "ndcg_at_10", "hr_at_10", "recall_at_20", "latency_ms_p50",
                      "embedding_bytes", "size_bytes", "threads", "warnings")))
