"""The stakeholder summary: baseline vs chosen point in one sentence, and a self-contained HTML report.

Everything here is computed from measured values only (the dense fp32 reference point of the
run and the chosen point); estimates (MACs, ideal size) are labelled wherever they appear.
No Streamlit in here.
"""
from __future__ import annotations

import datetime as _dt
import html
import math
from typing import Mapping

import pandas as pd
import plotly.graph_objects as go

from gemini_core.device import condition_warnings
from gemini_core.results.stats import NO_CHANGE, paired_difference, parse_bits, wilson_interval
from gemini_core.results.table import control_row, table_frame


def _num(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return v


def _times(x: float) -> str:
    return f"{x:.0f}x" if x >= 10 else f"{x:.1f}x"


def _ratio_text(ratio: float, better: str, worse: str, unknown: str) -> str:
    """'2.1x smaller' for a ratio >= 1, '1.3x larger' below 1 (a worse point says so)."""
    if not math.isfinite(ratio):
        return unknown
    return f"{_times(ratio)} {better}" if ratio >= 1.0 else f"{_times(1 / ratio)} {worse}"


def compare(reference: Mapping, chosen: Mapping) -> dict:
    """Ratios of ``chosen`` against ``reference`` (both point records or table rows).

    Returns size_ratio (reference size / chosen size: >1 means smaller), speed_ratio (reference
    latency / chosen latency: >1 means faster), accuracy_delta_pts (percentage points) and the
    phrases for each, e.g. "4.1x smaller", "2.7x faster", "-0.6 points accuracy".
    """
    ref_size, size = _num(reference.get("size_bytes")), _num(chosen.get("size_bytes"))
    ref_lat, lat = _num(reference.get("latency_ms_p50")), _num(chosen.get("latency_ms_p50"))
    ref_acc, acc = _num(reference.get("accuracy")), _num(chosen.get("accuracy"))
    size_ratio = ref_size / size if size > 0 else float("nan")
    speed_ratio = ref_lat / lat if lat > 0 else float("nan")
    delta = (acc - ref_acc) * 100.0
    size_text = _ratio_text(size_ratio, "smaller", "larger", "size unknown")
    speed_text = _ratio_text(speed_ratio, "faster", "slower", "latency unknown")
    paired = _paired(reference, chosen)
    measurable = True
    if not math.isfinite(delta):
        acc_text = "accuracy unknown"
    elif paired is not None:
        # The paired difference on the same test examples, with its 95% interval: within noise it says so.
        low, high = (v * 100 for v in paired["accuracy_delta_ci95"])
        interval = f"{delta:+.1f} points, 95% interval [{low:+.1f}, {high:+.1f}], n={paired['paired_n']}"
        measurable = paired["measurable"]
        acc_text = f"{NO_CHANGE} in accuracy ({interval})" if not measurable else f"{interval} accuracy"
    else:
        shown = round(delta, 1)
        acc_text = f"{'+' if shown > 0 else ('-' if shown < 0 else '±')}{abs(shown):.1f} points accuracy"
        n = chosen.get("test_n")
        if n:
            acc_text += f" (test n={int(n)}; no paired interval stored)"
    return {"size_ratio": size_ratio, "speed_ratio": speed_ratio, "accuracy_delta_pts": delta,
            "size_text": size_text, "speed_text": speed_text, "accuracy_text": acc_text,
            "accuracy_measurable": measurable, "paired": paired,
            "headline": f"{size_text}, {speed_text}, {acc_text}",
            "slower": math.isfinite(speed_ratio) and speed_ratio < 1.0}


def _paired(reference: Mapping, chosen: Mapping) -> dict | None:
    a, b = parse_bits(chosen.get("test_correct")), parse_bits(reference.get("test_correct"))
    if a is None or b is None or len(a) != len(b):
        return None
    return paired_difference(a, b)


def _accuracy_cell(row: Mapping) -> str:
    acc = _num(row.get("accuracy"))
    text = _fmt(acc * 100, ".2f") + " %"
    n = row.get("test_n")
    if n and math.isfinite(acc):
        low, high = wilson_interval(round(acc * int(n)), int(n))
        text += f" [{low * 100:.1f}, {high * 100:.1f}], n={int(n)}"
    return text


def _fmt_bytes(n) -> str:
    n = _num(n)
    if not math.isfinite(n):
        return "–"
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.2f} MB"
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n:.0f} B"


def _fmt(value, fmt: str) -> str:
    v = _num(value)
    return format(v, fmt) if math.isfinite(v) else "–"


def comparison_rows(reference: Mapping, chosen: Mapping) -> list[tuple[str, str, str]]:
    """(figure, baseline, chosen) rows for the summary table; estimates are labelled."""
    return [
        ("configuration", str(reference.get("label", "")), str(chosen.get("label", ""))),
        ("test accuracy [95% Wilson interval], test size", _accuracy_cell(reference), _accuracy_cell(chosen)),
        ("macro-F1", _fmt(reference.get("macro_f1"), ".4f"), _fmt(chosen.get("macro_f1"), ".4f")),
        ("latency p50 per batch", _fmt(reference.get("latency_ms_p50"), ".3f") + " ms",
         _fmt(chosen.get("latency_ms_p50"), ".3f") + " ms"),
        ("latency p90 per batch", _fmt(reference.get("latency_ms_p90"), ".3f") + " ms",
         _fmt(chosen.get("latency_ms_p90"), ".3f") + " ms"),
        ("latency p10-p90 (repeats)",
         f"{_fmt(reference.get('latency_ms_p10'), '.3f')}-{_fmt(reference.get('latency_ms_p90'), '.3f')} ms "
         f"({_fmt(reference.get('latency_runs'), '.0f')})",
         f"{_fmt(chosen.get('latency_ms_p10'), '.3f')}-{_fmt(chosen.get('latency_ms_p90'), '.3f')} ms "
         f"({_fmt(chosen.get('latency_runs'), '.0f')})"),
        ("threads, load (1 min) / cores", f"{reference.get('threads', '–')}, {reference.get('load_avg_1m', '–')} / "
         f"{reference.get('cores', '–')}", f"{chosen.get('threads', '–')}, {chosen.get('load_avg_1m', '–')} / "
         f"{chosen.get('cores', '–')}"),
        ("checkpoint size", _fmt_bytes(reference.get("size_bytes")), _fmt_bytes(chosen.get("size_bytes"))),
        ("ideal size (estimate)", _fmt_bytes(reference.get("ideal_size_bytes")),
         _fmt_bytes(chosen.get("ideal_size_bytes"))),
        ("parameters (non-zero)",
         f"{_fmt(reference.get('params'), ',.0f')} ({_fmt(reference.get('nonzero_params'), ',.0f')})",
         f"{_fmt(chosen.get('params'), ',.0f')} ({_fmt(chosen.get('nonzero_params'), ',.0f')})"),
        ("MACs (estimate)", _fmt(reference.get("macs"), ",.0f"), _fmt(chosen.get("macs"), ",.0f")),
        ("peak memory", _fmt_bytes(reference.get("peak_memory_bytes")), _fmt_bytes(chosen.get("peak_memory_bytes"))),
    ]


_CSS = """
body{font-family:Helvetica,Arial,sans-serif;color:#1F1D2B;margin:2rem auto;max-width:1150px;padding:0 1rem}
h1{color:#3A2DB8;margin-bottom:.2rem} .sub{color:#5E5A72;margin-top:0}
.headline{font-size:1.6rem;font-weight:700;margin:1rem 0}
.bad{color:#C0392B} .good{color:#1E8449}
table{border-collapse:collapse;margin:.6rem 0 1.4rem 0;font-size:.9rem}
th,td{border:1px solid #E3E0F5;padding:.3rem .6rem;text-align:right} th{background:#F3F2FB}
td:first-child,th:first-child{text-align:left}
.note{color:#5E5A72;font-size:.85rem}
"""


def _css_class(good: bool) -> str:
    return "good" if good else "bad"


def _control_paragraph(df: pd.DataFrame, chosen: Mapping) -> list[str]:
    """The chosen point against the fair control (unpruned, recovered with the same steps), when the run has one."""
    control = control_row(df) if len(df) and "is_control" in df.columns else None
    if control is None:
        return ["<p class='note'>This run has no control point (no point was fine-tuned), so the baseline is the "
                "only reference.</p>"]
    paired = _paired(control, chosen)
    if paired is None:
        return []
    low, high = (v * 100 for v in paired["accuracy_delta_ci95"])
    text = f"{paired['accuracy_delta'] * 100:+.1f} points, 95% interval [{low:+.1f}, {high:+.1f}]"
    if not paired["measurable"]:
        text = f"{NO_CHANGE} ({text})"
    return [f"<p>Against the <b>control</b> ({html.escape(str(control.get('label', '')))}: the unpruned model "
            f"recovered with the same steps, rate and data as the pruned points): {html.escape(text)}. This "
            "separates what compression costs from what the extra fine-tuning gave.</p>"]


def build_report_html(title: str, run: Mapping, reference: Mapping, chosen: Mapping, df: pd.DataFrame,
                      figures: Mapping[str, go.Figure] | None = None, device: Mapping | None = None) -> str:
    """One self-contained HTML file: headline, comparison, charts (plotly.js inlined) and all points."""
    cmp = compare(reference, chosen)
    esc = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1>",
             f"<p class='sub'>run <b>{esc(str(run.get('name', '')))}</b> ({esc(str(run.get('run_id', '')))}) · "
             f"scenario {esc(str(run.get('scenario', '')))} · generated "
             f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>",
             "<div class='headline'>"
             f"<span class='{_css_class(cmp['size_ratio'] >= 1)}'>{esc(cmp['size_text'])}</span>, "
             f"<span class='{_css_class(not cmp['slower'])}'>{esc(cmp['speed_text'])}</span>, "
             f"<span class='{_css_class(cmp['accuracy_delta_pts'] >= -0.05)}'>{esc(cmp['accuracy_text'])}</span>"
             "</div>",
             f"<p>Accuracy change is read against <b>the baseline</b> (the unpruned dense fp32 model as trained, "
             f"point {esc(str(reference.get('point_id', '')))}): a paired comparison on the same test examples "
             f"(95% paired bootstrap). When its interval contains 0 the report says '{NO_CHANGE}'.</p>",
             *_control_paragraph(df, chosen),
             *[f"<p class='bad'>Warning: {esc(w)}</p>" for w in condition_warnings(dict(chosen), dict(reference))],
             f"<p>Chosen point <b>{esc(str(chosen.get('label', '')))}</b> against the dense 32-bit baseline "
             f"<b>{esc(str(reference.get('label', '')))}</b>, both measured in this run "
             f"(batch {esc(str(chosen.get('batch_size', '')))}, device {esc(str(chosen.get('device', '')))}).</p>",
             "<table><tr><th>figure</th><th>baseline</th><th>chosen</th></tr>"]
    for name, a, b in comparison_rows(reference, chosen):
        parts.append(f"<tr><td>{esc(name)}</td><td>{esc(a)}</td><td>{esc(b)}</td></tr>")
    parts.append("</table>")
    first = True
    for name, fig in (figures or {}).items():
        parts.append(fig.to_html(full_html=False, include_plotlyjs=True if first else False,
                                 div_id=f"chart-{name}", config={"displaylogo": False}))
        first = False
    table = table_frame(df)
    parts.append("<h2>All measured points</h2>")
    parts.append(table.to_html(index=False, float_format=lambda v: f"{v:,.4g}", na_rep="–", border=0,
                               escape=True))
    if device:
        parts.append("<p class='note'>Measured on " + esc(", ".join(f"{k}: {v}" for k, v in device.items()))
                     + ".</p>")
    parts.append("<p class='note'>Speed-up and size ratios are against the run's unpruned 32-bit dense point; "
                 "a speed-up below 1.0x means slower than it. MACs and ideal size are estimates; every other "
                 "figure was measured.</p></body></html>")
    return "\n".join(parts)
