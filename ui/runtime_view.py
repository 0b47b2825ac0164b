"""How a point ran: its runtime and CPU, its calibration (a calibration that hurt is a warning) and the
``auto`` choice (every candidate's timing, which one was kept and why). Shown beside the selected point's
record (Overview/Sweep) and on the Export page; the rows come from ``gemini_core.results.runtime_info``.
"""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import streamlit as st

from gemini_core.results.runtime_info import (
    auto_choice_reason,
    auto_choice_rows,
    calibration_summary,
    runtime_summary,
)


def _pct(value) -> str:
    return "–" if value is None else f"{value * 100:.2f}%"


def _ms(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def runtime_details(record: Mapping, key: str) -> None:
    """Runtime, calibration and auto choice of one stored point (nothing when it ran on plain torch)."""
    summary = runtime_summary(record)
    if summary is not None:
        file_kb = summary["runtime_file_bytes"]
        st.caption(f"Runs on **{summary['runtime']} {summary['precision']}**"
                   + (f" (compute {summary['inference_precision']})" if summary.get("inference_precision") else "")
                   + f", {summary['threads']} threads"
                   + (f", runtime file {file_kb / 1024:.1f} KB" if isinstance(file_kb, (int, float)) else "")
                   + f" · CPU {summary['cpu'] or 'unknown'} · flags {' '.join(summary['cpu_flags']) or '–'}")
    calibration = calibration_summary(record)
    if calibration is not None:
        st.markdown("**Calibration**")
        delta = calibration["delta_points"]
        split = str(calibration["split"] or "validation").capitalize()
        scored = calibration["split_examples"] or "?"
        line = (f"{calibration['method']}; {calibration['calibration_examples'] or 0} training examples "
                f"in {calibration['calibration_batches'] or 0} batches. {split} accuracy ({scored} examples) "
                f"{_pct(calibration['accuracy_before'])} → {_pct(calibration['accuracy_after'])}"
                + (f" ({delta:+.2f} pts)" if delta is not None else "")
                + f": {calibration['verdict'] or 'no before/after recorded'}.")
        if calibration["hurt"]:
            st.warning(f"Calibration hurt accuracy: {line}")
        else:
            st.caption(line)
    rows = auto_choice_rows(record)
    if rows:
        st.markdown("**auto: every candidate timed on this machine**")
        st.dataframe(pd.DataFrame({
            "candidate": [r["candidate"] + (" (kept)" if r["kept"] else "") for r in rows],
            "p50 ms": [_ms(r["latency_ms_p50"]) for r in rows],
            "p10–p90 ms": [f"{_ms(r['latency_ms_p10'])}–{_ms(r['latency_ms_p90'])}" for r in rows],
            "speed-up": ["–" if r["speedup_vs_reference"] is None else f"{r['speedup_vs_reference']:.2f}x"
                         for r in rows],
            "val. accuracy": [_pct(r["validation_accuracy"]) for r in rows],
            "Δ pts": ["–" if r["accuracy_delta_pts"] is None else f"{r['accuracy_delta_pts']:+.2f}" for r in rows],
            "within tolerance": ["yes" if r["within_tolerance"] else (r["error"] or "no") for r in rows],
        }), hide_index=True, width="stretch", key=f"{key}_auto")
        st.caption(auto_choice_reason(record))
