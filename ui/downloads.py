"""Download buttons shared by Export and Report: points CSV, charts as PNG (kaleido) and HTML."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from gemini_core.charts.images import all_charts_html, figure_html, figure_png, png_unavailable_reason
from gemini_core.charts.sweep import sweep_figures
from gemini_core.results.table import points_csv


def chart_downloads(df: pd.DataFrame, run_id: str, key: str) -> None:
    """Points CSV, one chart as PNG or HTML, and every chart in one HTML file."""
    figs = sweep_figures(df)
    c = st.columns(4)
    c[0].download_button("Points CSV", points_csv(df), file_name=f"gemini-run-{run_id}-points.csv",
                         mime="text/csv", key=f"{key}_csv", on_click="ignore")
    name = c[1].selectbox("Chart", list(figs), key=f"{key}_chart", label_visibility="collapsed",
                          format_func=lambda n: n.replace("_", " "))
    fig = figs[name]
    reason = png_unavailable_reason()
    if reason is None:
        c[2].download_button("Chart PNG", data=lambda: figure_png(fig), file_name=f"{name}-{run_id}.png",
                             mime="image/png", key=f"{key}_png", on_click="ignore")
    else:
        c[2].caption(f"PNG unavailable: {reason}")
    c[3].download_button("Chart HTML (interactive)", figure_html(fig), file_name=f"{name}-{run_id}.html",
                         mime="text/html", key=f"{key}_html", on_click="ignore")
    st.download_button("All charts (one interactive HTML file)",
                       data=lambda: all_charts_html(figs, f"Gemini run {run_id}"),
                       file_name=f"gemini-run-{run_id}-charts.html", mime="text/html", key=f"{key}_html_all",
                       on_click="ignore")
