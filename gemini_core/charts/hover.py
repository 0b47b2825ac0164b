"""The hover card of a measured point: every figure of the point, NaN shown as empty."""
from __future__ import annotations

import math

import pandas as pd

from gemini_core.results.pareto import finite

HOVER_FIELDS = [
    ("point_id", "point %{customdata[0]}"),
    ("label", "<b>%{customdata[1]}</b>"),
    ("prune_method", "prune: %{customdata[2]}"),
    ("prune_ratio", "ratio: %{customdata[3]:.2f}"),
    ("finetune_steps", "fine-tune: %{customdata[4]} steps"),
    ("bits", "bits: %{customdata[5]}"),
    ("granularity", "granularity: %{customdata[6]}"),
    ("execution", "execution: %{customdata[7]}"),
    ("accuracy_pct", "accuracy: %{customdata[8]:.2f}%"),
    ("macro_f1", "macro-F1: %{customdata[9]:.4f}"),
    ("latency_ms_p50", "latency p50: %{customdata[10]:.3f} ms"),
    ("latency_ms_p90", "latency p90: %{customdata[11]:.3f} ms"),
    ("speedup", "speed-up vs dense fp32: %{customdata[12]:.2f}x"),
    ("size_kb", "size: %{customdata[13]:.1f} KB"),
    ("ideal_size_kb", "ideal size (estimate): %{customdata[14]:.1f} KB"),
    ("compression", "smaller vs dense fp32: %{customdata[15]:.2f}x"),
    ("params", "params: %{customdata[16]:,}"),
    ("nonzero_params", "non-zero params: %{customdata[17]:,}"),
    ("macs", "MACs (estimate): %{customdata[18]:,}"),
    ("peak_memory_kb", "peak memory: %{customdata[19]:.1f} KB"),
    ("backend", "backend: %{customdata[20]}"),
    ("device", "device: %{customdata[21]}"),
    ("host", "host: %{customdata[22]}"),
    ("batch_size", "batch: %{customdata[23]}"),
    ("pareto_text", "%{customdata[24]}"),
    ("accuracy_ci95_text", "accuracy 95% interval: %{customdata[25]}"),
    ("change_vs_baseline", "vs baseline: %{customdata[26]}"),
    ("change_vs_control", "vs control: %{customdata[27]}"),
    ("latency_ms_p10", "latency p10: %{customdata[28]:.3f} ms"),
    ("latency_runs", "latency repeats: %{customdata[29]}"),
    ("threads", "threads: %{customdata[30]}, load (1 min): %{customdata[31]}"),
    ("load_avg_1m", ""),
    ("conditions", "%{customdata[32]}"),
]


HOVER_TEMPLATE = "<br>".join(t for _, t in HOVER_FIELDS if t) + "<extra></extra>"


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalar -> Python
        value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
    return value


def hover_data(df: pd.DataFrame) -> tuple[list[list], str]:
    """customdata rows (every figure of the point, NaN -> None) and the hover template using them."""
    acc = df["accuracy"] * 100.0
    mem = df["peak_memory_bytes"] / 1024.0
    text = [("on the Pareto front" if p else "") + ("" if not finite(s) or s >= 1.0 else " · SLOWER than dense fp32")
            for p, s in zip(df["pareto"], df["speedup"])]
    columns = []
    for field, _ in HOVER_FIELDS:
        if field == "accuracy_pct":
            columns.append(acc.tolist())
        elif field == "peak_memory_kb":
            columns.append(mem.tolist())
        elif field == "pareto_text":
            columns.append(text)
        elif field in df.columns:
            columns.append(df[field].tolist())
        else:  # a figure older records do not have
            columns.append([None] * len(df))
    custom = [[_clean(v) for v in row] for row in zip(*columns)]
    return custom, HOVER_TEMPLATE
