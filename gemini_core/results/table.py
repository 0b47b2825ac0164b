"""The points table: measured point records in, one flat ``pandas`` row per point out.

Flat config columns, the ratios against the run's dense fp32 reference (speed-up, compression,
accuracy delta), the Pareto flag, the readable table for the pages and the HTML report, and the
points CSV. No plotting and no Streamlit here: the dashboard, the charts, the report and bench share it.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Mapping

import pandas as pd

from gemini_core.device import condition_warnings
from gemini_core.results.pareto import is_llm_records, pareto_front
from gemini_core.results.stats import describe_delta, paired_difference, parse_bits

CONFIG_FIELDS = ("prune_method", "prune_ratio", "finetune_steps", "bits", "granularity", "execution")
NUMERIC_FIELDS = ("accuracy", "perplexity", "decode_tokens_per_s", "prefill_ms_p50",
                  "macro_f1", "latency_ms_p50", "latency_ms_p90", "size_bytes", "ideal_size_bytes",
                  "params", "nonzero_params", "macs", "peak_memory_bytes", "threads", "batch_size", "seconds")


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


def _finite_positive(value) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def control_row(df: pd.DataFrame) -> pd.Series | None:
    ctl = df[df["is_control"] & (df["status"] == "ok")] if len(df) and "is_control" in df.columns else df.iloc[:0]
    return ctl.iloc[-1] if len(ctl) else None


@lru_cache(maxsize=1024)
def _paired_cached(bits: str, ref_bits: str) -> dict:
    """The paired bootstrap of two stored correctness strings (pages redraw often; the answer never changes)."""
    return paired_difference(parse_bits(bits), parse_bits(ref_bits))


def paired_columns(df: pd.DataFrame, against: pd.Series | None, suffix: str) -> None:
    """Add ``accuracy_delta_<suffix>`` (+ ``_ci95``, ``_measurable``) paired against the ``against`` row."""
    ref_bits = against.get("test_correct") if against is not None else None
    deltas, intervals, measurable = [], [], []
    for rec in df.to_dict("records"):
        bits = rec.get("test_correct") if rec.get("status") == "ok" else None
        if not isinstance(bits, str) or not isinstance(ref_bits, str) or not bits or len(bits) != len(ref_bits):
            deltas.append(float("nan")), intervals.append(None), measurable.append(None)
            continue
        paired = _paired_cached(bits, ref_bits)
        deltas.append(paired["accuracy_delta"]), intervals.append(paired["accuracy_delta_ci95"])
        measurable.append(paired["measurable"])
    df[f"accuracy_delta_{suffix}"] = deltas
    df[f"accuracy_delta_{suffix}_ci95"] = intervals
    df[f"accuracy_delta_{suffix}_measurable"] = measurable


def llm_config_columns(cfg: Mapping) -> dict:
    """An LLM point's config in the table's shared columns (so groupings and colours work for it too); its own
    fields are kept beside them (``quant_method``, ``group_size``, ``sparsity``, ``pattern``, ...)."""
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
            "recovery": cfg.get("recovery", "none"),
            **{k: cfg.get(k) for k in ("quant_method", "group_size", "sparsity", "pattern", "mlp_ratio", "head_ratio")}}


def points_frame(records: Iterable[Mapping], objectives: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per point with flat config columns and the ratios against the dense reference.

    Added columns: ``is_reference``; ``speedup`` (reference p50 latency / this p50: below 1.0 means
    slower than the reference); ``compression`` (reference size / this size); ``accuracy_delta_pts``
    (percentage points vs the reference); ``pareto``; ``size_kb``, ``ideal_size_kb`` (estimate);
    ``is_control``; ``change_vs_baseline`` / ``change_vs_control`` (paired change with its 95% interval, or
    "no measurable change"); ``accuracy_delta_control`` (+ ``_ci95``, ``_measurable``); ``accuracy_ci95_text``;
    ``conditions`` (busy machine, another thread count or CPU than the reference).
    """
    rows = []
    records = list(records)
    llm = is_llm_records(records)
    for rec in records:
        cfg = rec.get("config") or {}
        row = {k: v for k, v in rec.items() if k not in ("config", "traceback", "steps")}
        if llm:
            row.update(llm_config_columns(cfg))
            row["is_llm_reference"] = all(cfg.get(k) == v for k, v in _LLM_REFERENCE.items())
            row["per_layer"] = False
            rows.append(row)
            continue
        for field in CONFIG_FIELDS:
            row[field] = cfg.get(field, rec.get(field))
        row["per_layer"] = bool(cfg.get("layer_overrides"))  # an allocator / per-layer point
        row["recovery"] = cfg.get("recovery", rec.get("recovery"))
        rows.append(row)
    columns = ["point_id", "run_id", "label", "status", "error", *CONFIG_FIELDS, *NUMERIC_FIELDS,
               "backend", "device", "host", "reused"]
    df = pd.DataFrame(rows)
    for col in columns:
        if col not in df.columns:
            df[col] = None
    if "per_layer" not in df.columns:
        df["per_layer"] = pd.Series(dtype=bool)
    if df.empty:
        for col in ("is_reference", "pareto"):
            df[col] = pd.Series(dtype=bool)
        for col in ("speedup", "compression", "accuracy_delta_pts", "size_kb", "ideal_size_kb"):
            df[col] = pd.Series(dtype=float)
        return df
    df["status"] = df["status"].fillna("ok")
    for col in NUMERIC_FIELDS + ("prune_ratio", "finetune_steps", "bits"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    if llm:
        df["is_reference"] = df["is_llm_reference"].fillna(False).astype(bool)
        df["is_control"] = False
    else:
        df["is_reference"] = [is_reference(r) for r in df.to_dict("records")]
        df["is_control"] = [is_control(r) for r in df.to_dict("records")]
    ok = df["status"] == "ok"
    ref = df[df["is_reference"] & ok]
    if len(ref):
        r = ref.iloc[-1]
        df["speedup"] = r["latency_ms_p50"] / df["latency_ms_p50"]
        df["compression"] = r["size_bytes"] / df["size_bytes"]
        df["accuracy_delta_pts"] = (df["accuracy"] - r["accuracy"]) * 100.0
        df["perplexity_ratio"] = df["perplexity"] / r["perplexity"]
        df["perplexity_increase_pct"] = (df["perplexity_ratio"] - 1.0) * 100.0
    else:
        df["perplexity_ratio"] = float("nan")
        df["perplexity_increase_pct"] = float("nan")
        df["speedup"] = float("nan")
        df["compression"] = float("nan")
        df["accuracy_delta_pts"] = float("nan")
    df["size_kb"] = df["size_bytes"] / 1024.0
    df["ideal_size_kb"] = df["ideal_size_bytes"] / 1024.0
    df["pareto"] = pareto_front(df, objectives)  # None: perplexity (lower is better) for LLM points
    # Each accuracy against the baseline (stored with the point) and against the fair control.
    if "accuracy_delta" not in df.columns:
        df["accuracy_delta"] = float("nan")
    if "accuracy_delta_ci95" not in df.columns:
        df["accuracy_delta_ci95"] = None
    df["change_vs_baseline"] = [describe_delta(d, ci) for d, ci in zip(df["accuracy_delta"], df["accuracy_delta_ci95"])]
    paired_columns(df, control_row(df), "control")
    df["change_vs_control"] = [describe_delta(d, ci) for d, ci in
                               zip(df["accuracy_delta_control"], df["accuracy_delta_control_ci95"])]
    # Busy machine, or another thread count / CPU than the reference it is compared with.
    reference = ref.iloc[-1].to_dict() if len(ref) else None
    df["conditions"] = ["; ".join(condition_warnings(r, reference)) if r.get("status") == "ok" else ""
                        for r in df.to_dict("records")]
    df["accuracy_ci95_text"] = [
        f"{ci[0] * 100:.1f}-{ci[1] * 100:.1f}% (n={int(n)})" if isinstance(ci, (list, tuple)) and n == n else "-"
        for ci, n in zip(df.get("accuracy_ci95", [None] * len(df)), df.get("test_n", [float("nan")] * len(df)))]
    return df


# An LLM point's config that is the uncompressed reference (any execution).
_LLM_REFERENCE = {"quant_method": "none", "bits": 32, "prune_method": "none", "sparsity": 0.0,
                  "pattern": "unstructured", "mlp_ratio": 0.0, "head_ratio": 0.0, "recovery": "none",
                  "recovery_steps": 0}


def reference_row(df: pd.DataFrame) -> pd.Series | None:
    ref = df[df["is_reference"] & (df["status"] == "ok")] if len(df) else df
    return ref.iloc[-1] if len(ref) else None


def ok_points(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if len(df) else df


TABLE_COLUMNS = {
    "point_id": "point",
    "label": "configuration",
    "pareto": "front",
    "perplexity": "perplexity (lower is better)",
    "perplexity_increase_pct": "perplexity change vs fp32 (%)",
    "accuracy_pct": "accuracy (%)",
    "accuracy_ci95_text": "accuracy 95% interval (test n)",
    "change_vs_baseline": "vs baseline (paired, 95%)",
    "change_vs_control": "vs control (paired, 95%)",
    "accuracy_delta_pts": "Δ accuracy vs reference (points)",
    "latency_ms_p50": "latency p50 (ms)",
    "latency_ms_p90": "latency p90 (ms)",
    "latency_ms_p10": "latency p10 (ms)",
    "latency_runs": "latency repeats",
    "load_avg_1m": "load (1 min)",
    "conditions": "measurement warnings",
    "threads": "threads",
    "speedup": "speed-up vs dense fp32 (x)",
    "prefill_ms_p50": "prefill p50 (ms)",
    "decode_tokens_per_s": "decode (tokens/s)",
    "context_len": "context (tokens)",
    "stride": "stride (tokens)",
    "size_kb": "size (KB)",
    "compression": "smaller vs dense fp32 (x)",
    "ideal_size_kb": "ideal size (KB, estimate)",
    "params": "params",
    "nonzero_params": "non-zero params",
    "macs": "MACs (estimate)",
    "peak_memory_bytes": "peak memory (bytes)",
    "prune_method": "prune method",
    "prune_ratio": "prune ratio",
    "finetune_steps": "fine-tune steps",
    "bits": "bits",
    "granularity": "granularity",
    "execution": "execution",
    "backend": "backend",
    "batch_size": "batch",
    "status": "status",
    "error": "error",
}


def table_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The sortable points table: readable column names, numbers left numeric (so sorting works)."""
    out = df.copy()
    out["accuracy_pct"] = out["accuracy"] * 100.0 if len(out) else pd.Series(dtype=float)
    cols = [c for c in TABLE_COLUMNS if c in out.columns]
    if len(out) and out["perplexity"].notna().any():  # an LLM run: no accuracy columns unless measured
        unused = ("accuracy_pct", "accuracy_ci95_text", "change_vs_baseline", "change_vs_control",
                  "accuracy_delta_pts", "macs", "granularity")
        cols = [c for c in cols if c not in unused or (c in out.columns and out[c].notna().any()
                                                       and c not in ("change_vs_baseline", "change_vs_control",
                                                                     "accuracy_ci95_text"))]
    out = out[cols].rename(columns=TABLE_COLUMNS)
    return out.reset_index(drop=True)


CSV_DROP = ("notes", "estimated_fields", "traceback", "test_correct")
CSV_FIRST = ("point_id", "run_id", "label", "status", *CONFIG_FIELDS, "perplexity", "accuracy", "macro_f1",
             "accuracy_delta_pts", "latency_ms_p50", "latency_ms_p90", "speedup", "size_bytes", "compression",
             "ideal_size_bytes", "params", "nonzero_params", "macs", "peak_memory_bytes", "pareto", "is_reference")


def points_csv(df: pd.DataFrame) -> bytes:
    """Every point with every figure: config and headline figures first, then the rest."""
    first = [c for c in CSV_FIRST if c in df.columns]
    rest = [c for c in df.columns if c not in first and c not in CSV_DROP]
    return df[first + rest].to_csv(index=False).encode("utf-8")
