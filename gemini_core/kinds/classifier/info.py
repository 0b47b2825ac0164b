"""The classifier kind, described for every door without torch: accuracy on held-out data is its quality,
its reference is the unpruned 32-bit dense point, its control the same point fine-tuned like the pruned ones."""
from __future__ import annotations

from collections.abc import Mapping

from gemini_core.kinds.registry import KindInfo, register_kind

CONFIG_FIELDS = ("prune_method", "prune_ratio", "finetune_steps", "bits", "granularity", "execution")


def _finite_positive(value) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def config_columns(cfg: Mapping) -> dict:
    row = {field: cfg.get(field) for field in CONFIG_FIELDS}
    row["per_layer"] = bool(cfg.get("layer_overrides"))  # an allocator / per-layer point
    row["recovery"] = cfg.get("recovery")
    return row


def is_reference(row: Mapping) -> bool:
    """The unpruned 32-bit dense point every ratio is measured against (not recovered: not the control)."""
    return (str(row.get("prune_method")) == "none" or float(row.get("prune_ratio") or 0) == 0) \
        and int(row.get("bits") or 0) == 32 and str(row.get("execution")) == "dense" \
        and not _finite_positive(row.get("finetune_steps")) and str(row.get("recovery") or "finetune") != "qat"


def is_control(row: Mapping) -> bool:
    """The fair control: unpruned, 32-bit dense, recovered with fine-tuning steps like the pruned points."""
    return str(row.get("prune_method")) == "none" and int(row.get("bits") or 0) == 32 \
        and str(row.get("execution")) == "dense" and _finite_positive(row.get("finetune_steps")) \
        and str(row.get("recovery") or "finetune") != "qat"


INFO = register_kind(KindInfo(
    name="classifier", label="classifier (accuracy on held-out data)", sweep_noun="a classifier sweep",
    model_noun="a classifier", quality_metric="accuracy",
    engine_module="gemini_core.kinds.classifier.engine", config_columns=config_columns,
    is_reference=is_reference, is_control=is_control, latency_heading="latency p50 per batch (ms)",
    size_heading="checkpoint size (bytes written)", trains_baseline=True,
    allocates_from_profile=True,
    cli_table_fields=("point_id", "label", "accuracy_pct", "accuracy_ci95_text", "change_vs_baseline",
                      "change_vs_control", "latency_ms_p50", "latency_ms_p10", "latency_ms_p90", "latency_runs",
                      "size_bytes", "threads", "load_avg_1m", "warnings")))
