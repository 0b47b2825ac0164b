"""Download buttons shared by Export and Report: points CSV, charts as PNG (kaleido) and HTML."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from . import plots

CSV_DROP = ("notes", "estimated_fields", "traceback")


CSV_FIRST = ("point_id", "run_id", "label", "status", *plots.CONFIG_FIELDS, "accuracy", "macro_f1",
             "accuracy_delta_pts", "latency_ms_p50", "latency_ms_p90", "speedup", "size_bytes", "compression",
             "ideal_size_bytes", "params", "nonzero_params", "macs", "peak_memory_bytes", "pareto", "is_reference")


def points_csv(df: pd.DataFrame) -> bytes:
    """Every point with every figure: config and headline figures first, then the rest."""
    first = [c for c in CSV_FIRST if c in df.columns]
    rest = [c for c in df.columns if c not in first and c not in CSV_DROP]
    return df[first + rest].to_csv(index=False).encode("utf-8")


def all_charts_html(figs: dict, title: str) -> str:
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"]
    for i, fig in enumerate(figs.values()):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts.append("</body></html>")
    return "\n".join(parts)


def chart_downloads(df: pd.DataFrame, run_id: str, key: str) -> None:
    """Points CSV, one chart as PNG or HTML, and every chart in one HTML file."""
    figs = plots.sweep_figures(df)
    c = st.columns(4)
    c[0].download_button("Points CSV", points_csv(df), file_name=f"gemini-run-{run_id}-points.csv",
                         mime="text/csv", key=f"{key}_csv", on_click="ignore")
    name = c[1].selectbox("Chart", list(figs), key=f"{key}_chart", label_visibility="collapsed",
                          format_func=lambda n: n.replace("_", " "))
    fig = figs[name]
    reason = plots.png_unavailable_reason()
    if reason is None:
        c[2].download_button("Chart PNG", data=lambda: plots.figure_png(fig), file_name=f"{name}-{run_id}.png",
                             mime="image/png", key=f"{key}_png", on_click="ignore")
    else:
        c[2].caption(f"PNG unavailable: {reason}")
    c[3].download_button("Chart HTML (interactive)", plots.figure_html(fig), file_name=f"{name}-{run_id}.html",
                         mime="text/html", key=f"{key}_html", on_click="ignore")
    st.download_button("All charts (one interactive HTML file)",
                       data=lambda: all_charts_html(figs, f"Gemini run {run_id}"),
                       file_name=f"gemini-run-{run_id}-charts.html", mime="text/html", key=f"{key}_html_all",
                       on_click="ignore")
