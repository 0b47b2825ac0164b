"""The points table: measured point records in, one flat ``pandas`` row per point out.

Flat config columns (the kind's ``config_columns``), the ratios against the run's reference (speed-up,
compression, each quality metric's change), the Pareto flag, the readable table for the pages and the
HTML report, and the points CSV. The kind (``kinds.registry``) says which row is the reference and the
control; its quality metric (``results.metrics``) says which way is better and how a change is measured.
No plotting and no Streamlit here: the dashboard, the charts, the report and bench share it.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import pandas as pd

from gemini_core.device import condition_warnings
from gemini_core.kinds.registry import KindInfo
from gemini_core.results.metrics import METRICS, Paired, QualityMetric, finite, get_metric, kind_of_rows
from gemini_core.results.pareto import pareto_front
from gemini_core.results.peers import peer_mask, without_peers

# The table's shared config columns: every kind's ``config_columns`` fills them (groupings, colours, the
# charts' encodings work for every kind); a kind's own config fields are kept beside them.
CONFIG_FIELDS = ("prune_method", "prune_ratio", "finetune_steps", "bits", "granularity", "execution")
# Figures every kind measures (each quality metric's column and the kind's own figures are added to them).
SHARED_NUMERIC_FIELDS = ("macro_f1", "latency_ms_p50", "latency_ms_p90", "size_bytes", "ideal_size_bytes", "params",
                         "nonzero_params", "macs", "peak_memory_bytes", "threads", "batch_size", "seconds")


def numeric_fields(kind: KindInfo) -> tuple[str, ...]:
    """The numeric columns of a table of ``kind``: every metric's value (a kind may measure a second one, as
    a causal LM's zero-shot accuracy), the shared figures and the kind's own figures."""
    metric_columns = tuple(dict.fromkeys(m.column for m in METRICS.values()))
    return tuple(dict.fromkeys((*metric_columns, *SHARED_NUMERIC_FIELDS, *(c.name for c in kind.extra_columns))))


def control_row(df: pd.DataFrame) -> pd.Series | None:
    ctl = df[df["is_control"] & (df["status"] == "ok")] if len(df) and "is_control" in df.columns else df.iloc[:0]
    return ctl.iloc[-1] if len(ctl) else None


def stored_paired(record: Mapping, metric: QualityMetric) -> Paired | None:
    """The paired comparison the sweep stored with the point (``<metric>_delta`` and ``_ci95``, against the
    baseline), None when the record has none."""
    delta, ci = record.get(f"{metric.name}_delta"), record.get(f"{metric.name}_delta_ci95")
    if not finite(delta) or not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(finite(v) for v in ci):
        return None
    return Paired(float(delta), (float(ci[0]), float(ci[1])), metric.null, 0)


def paired_columns(df: pd.DataFrame, against: pd.Series | None, suffix: str, metric: QualityMetric) -> None:
    """Add ``<metric>_delta_<suffix>`` (+ ``_ci95``, ``_measurable``): each ok point paired against the
    ``against`` row on the same evaluation data (the metric's statistic: a difference, or a ratio), and
    ``change_vs_<suffix>``, the same in words."""
    other = against.to_dict() if against is not None else None
    deltas, intervals, measurable, words = [], [], [], []
    for rec in df.to_dict("records"):
        paired = metric.paired(rec, other) if rec.get("status") == "ok" and other is not None else None
        deltas.append(paired.estimate if paired else float("nan"))
        intervals.append(list(paired.ci95) if paired else None)
        measurable.append(paired.measurable if paired else None)
        words.append(metric.describe_paired(paired))
    df[f"{metric.name}_delta_{suffix}"] = deltas
    df[f"{metric.name}_delta_{suffix}_ci95"] = intervals
    df[f"{metric.name}_delta_{suffix}_measurable"] = measurable
    df[f"change_vs_{suffix}"] = words


def _config_columns(kind: KindInfo, rec: Mapping) -> dict:
    """The kind's shared config columns of a record; a field the config lacks comes from the record itself
    (older records kept some of them at the top level)."""
    return {k: (rec.get(k) if v is None else v) for k, v in kind.config_columns(rec.get("config") or {}).items()}


def points_frame(records: Iterable[Mapping], objectives: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per point with flat config columns and the ratios against the reference.

    The kind of the records (``kind_of_records``; one kind per table) gives the config columns, the
    reference (``is_reference``) and the control (``is_control``); its quality metric the rest. Added
    columns: ``kind``; ``is_reference``; ``speedup`` (reference p50 latency / this p50: below 1.0 means
    slower than the reference); ``compression`` (reference size / this size); each quality metric's change
    against the reference in its own unit (``accuracy_delta_pts``: points; ``perplexity_increase_pct``: % of
    the reference); ``pareto``; ``size_kb``, ``ideal_size_kb`` (estimate); ``is_control``;
    ``change_vs_baseline`` / ``change_vs_control`` (paired change with its 95% interval, or "no measurable
    change"); ``<metric>_delta_control`` (+ ``_ci95``, ``_measurable``); ``quality_ci95`` and
    ``quality_ci95_text`` (the run's metric) and ``<metric>_ci95_text`` for every metric measured;
    ``conditions`` (busy machine, another thread count or CPU than the reference).
    """
    records = list(records)
    kind = kind_of_rows(records)
    metric = get_metric(kind.quality_metric)
    rows = []
    for number, rec in enumerate(records, 1):
        row = {k: v for k, v in rec.items() if k not in ("config", "traceback", "steps")}
        if row.get("point_id") is None:  # records not yet stored (a bench's) are numbered as the store numbers them
            row["point_id"] = number
        row.update(_config_columns(kind, rec))
        row["kind"] = kind.name  # one spelling for the whole table (older records have none)
        rows.append(row)
    numeric = numeric_fields(kind)
    columns = ["point_id", "run_id", "label", "status", "error", *CONFIG_FIELDS, *numeric,
               "backend", "device", "host", "reused"]
    df = pd.DataFrame(rows)
    for col in columns:
        if col not in df.columns:
            df[col] = None
    if "per_layer" not in df.columns:
        df["per_layer"] = pd.Series(dtype=bool)
    df["kind"] = kind.name
    changes = [m.change_column for m in METRICS.values()]
    if df.empty:
        for col in ("is_reference", "is_control", "pareto"):
            df[col] = pd.Series(dtype=bool)
        for col in ("speedup", "compression", *changes, "size_kb", "ideal_size_kb"):
            df[col] = pd.Series(dtype=float)
        return df
    df["status"] = df["status"].fillna("ok")
    for col in numeric + ("prune_ratio", "finetune_steps", "bits"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    peers = peer_mask(df)  # a library peer is never the product's reference or control
    df["is_reference"] = pd.Series([bool(kind.is_reference(r)) for r in df.to_dict("records")], index=df.index) & ~peers
    df["is_control"] = pd.Series([bool(kind.is_control(r)) for r in df.to_dict("records")], index=df.index) & ~peers
    ok = df["status"] == "ok"
    ref = df[df["is_reference"] & ok]
    r = ref.iloc[-1] if len(ref) else None
    nan = float("nan")
    df["speedup"] = r["latency_ms_p50"] / df["latency_ms_p50"] if r is not None else nan
    df["compression"] = r["size_bytes"] / df["size_bytes"] if r is not None else nan
    for m in METRICS.values():  # every metric the points carry (a causal LM may carry zero-shot accuracy too)
        df[m.change_column] = m.change(df[m.column], r[m.column]) if r is not None else nan
    df["size_kb"] = df["size_bytes"] / 1024.0
    df["ideal_size_kb"] = df["ideal_size_bytes"] / 1024.0
    df["pareto"] = pareto_front(df, objectives)  # None: the kind's metric (its direction), latency, size
    # Each point against the baseline (the sweep stores that pairing with the point; without it, paired
    # here against the reference row) and against the fair control.
    for suffix in ("", "_ci95"):
        if f"{metric.name}_delta{suffix}" not in df.columns:
            df[f"{metric.name}_delta{suffix}"] = nan if not suffix else None
    reference = r.to_dict() if r is not None else None
    df["change_vs_baseline"] = [
        metric.describe_paired(stored_paired(rec, metric) or (
            metric.paired(rec, reference) if rec.get("status") == "ok" and reference is not None else None))
        for rec in df.to_dict("records")]
    paired_columns(df, control_row(df), "control", metric)
    # Busy machine, or another thread count / CPU than the reference it is compared with.
    df["conditions"] = ["; ".join(condition_warnings(row, reference)) if row.get("status") == "ok" else ""
                        for row in df.to_dict("records")]
    rows = df.to_dict("records")
    for m in METRICS.values():
        df[f"{m.name}_ci95_text"] = [m.interval_text(row) for row in rows]
    df["quality_ci95"] = [metric.interval(row) for row in rows]
    df["quality_ci95_text"] = df[f"{metric.name}_ci95_text"]
    return df


def reference_row(df: pd.DataFrame) -> pd.Series | None:
    ref = df[df["is_reference"] & (df["status"] == "ok")] if len(df) else df
    return ref.iloc[-1] if len(ref) else None


def ok_points(df: pd.DataFrame) -> pd.DataFrame:
    """The measured points, library peers included (tables and charts show them)."""
    return df[df["status"] == "ok"] if len(df) else df


def shippable_points(df: pd.DataFrame) -> pd.DataFrame:
    """The measured points the product made: what the ship rule, the pickers and export choose from."""
    return without_peers(ok_points(df))


# Headings of the columns every kind shares; the quality columns, the latency headings and the kind's own
# figures come from the kind and its metric (``table_columns``).
TABLE_COLUMNS = {
    "point_id": "point",
    "label": "configuration",
    "peer": "library peer (not shippable)",
    "pareto": "front",
    "change_vs_baseline": "vs baseline (paired, 95%)",
    "change_vs_control": "vs control (paired, 95%)",
    "latency_ms_p50": "latency p50 (ms)",
    "latency_ms_p90": "latency p90 (ms)",
    "latency_ms_p10": "latency p10 (ms)",
    "latency_runs": "latency repeats",
    "load_avg_1m": "load (1 min)",
    "conditions": "measurement warnings",
    "threads": "threads",
    "speedup": "speed-up vs dense fp32 (x)",
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
QUALITY_SHOWN = "quality_shown"  # table_frame's column of the metric's shown value (accuracy in %)


def latency_headings(kind: KindInfo) -> dict[str, str]:
    """The latency columns' headings for what this kind times (``KindInfo.latency_heading``)."""
    p50 = kind.latency_heading
    return {"latency_ms_p50": p50, "latency_ms_p90": p50.replace("p50", "p90"),
            "latency_ms_p10": p50.replace("p50", "p10")}


def table_columns(df: pd.DataFrame) -> dict[str, str]:
    """{field: heading} of the readable table of ``df``'s kind, in order: what the point is, its quality
    (the metric's value, interval, paired changes, change against the reference), latency, the kind's own
    figures and the metric's protocol, size, cost, config, status."""
    kind = kind_of_rows(df)
    metric = get_metric(kind.quality_metric)
    shared = {**TABLE_COLUMNS, **latency_headings(kind)}
    cols = {k: shared[k] for k in ("point_id", "label", "peer", "pareto")}
    cols[QUALITY_SHOWN] = metric.heading
    cols["quality_ci95_text"] = f"{metric.label} 95% interval (n = {metric.sample_name})"
    cols["change_vs_baseline"] = shared["change_vs_baseline"]
    cols["change_vs_control"] = shared["change_vs_control"]
    cols[metric.change_column] = metric.change_heading
    for k in ("latency_ms_p50", "latency_ms_p90", "latency_ms_p10", "latency_runs", "load_avg_1m", "conditions",
              "threads", "speedup"):
        cols[k] = shared[k]
    cols.update({c.name: c.heading for c in kind.extra_columns})
    cols.update({field: name for field, name in metric.protocol})
    for k in ("size_kb", "compression", "ideal_size_kb", "params", "nonzero_params", "macs", "peak_memory_bytes",
              *CONFIG_FIELDS, "backend", "batch_size", "status", "error"):
        cols[k] = shared[k]
    return cols


def _empty(values: pd.Series) -> bool:
    return all(v is None or v == "-" or v == "" or (isinstance(v, float) and v != v) for v in values)


def table_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The sortable points table: readable column names, numbers left numeric (so sorting works); a column
    with nothing in any row (a figure this kind or this run does not measure) is left out."""
    out = df.copy()
    kind = kind_of_rows(df)
    metric = get_metric(kind.quality_metric)
    out[QUALITY_SHOWN] = out[metric.column] * metric.scale if len(out) else pd.Series(dtype=float)
    for col in kind.extra_columns:  # shown as their headings say (a share in percent, say)
        if col.name in out.columns and col.scale != 1.0:
            out[col.name] = pd.to_numeric(out[col.name], errors="coerce") * col.scale
    headings = table_columns(df)
    cols = [c for c in headings if c in out.columns and (not len(out) or not _empty(out[c]))]
    out = out[cols].rename(columns=headings)
    return out.reset_index(drop=True)


CSV_FIRST = ("point_id", "run_id", "label", "status", *CONFIG_FIELDS)
CSV_AFTER_QUALITY = ("latency_ms_p50", "latency_ms_p90", "speedup", "size_bytes", "compression", "ideal_size_bytes",
                     "params", "nonzero_params", "macs", "peak_memory_bytes", "pareto", "is_reference")
CSV_DROP = ("notes", "estimated_fields", "traceback")


def points_csv(df: pd.DataFrame) -> bytes:
    """Every point with every figure: config and headline figures first (the run's quality metric before the
    others), then the rest. Per-example data kept to pair points (``raw_fields``) stays in the store."""
    metric = get_metric(kind_of_rows(df).quality_metric)
    quality = [metric.column, *(m.column for m in METRICS.values()), "macro_f1", metric.change_column,
               *(m.change_column for m in METRICS.values())]
    first = [c for c in dict.fromkeys((*CSV_FIRST, *quality, *CSV_AFTER_QUALITY)) if c in df.columns]
    drop = {*CSV_DROP, *(f for m in METRICS.values() for f in m.raw_fields), "quality_ci95"}
    rest = [c for c in df.columns if c not in first and c not in drop]
    return df[first + rest].to_csv(index=False).encode("utf-8")
