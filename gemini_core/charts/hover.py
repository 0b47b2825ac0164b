"""The hover card of a measured point: five short lines (what it is, accuracy, latency, size, front).

The full record is one click away (the dashboard's side panel), so the card never covers the chart.
``customdata[0]`` is always the point id: the pages read it back from a chart selection.
"""
from __future__ import annotations

import pandas as pd

from gemini_core.results.pareto import finite

HOVER_TEMPLATE = ("<b>%{customdata[1]}</b><br>%{customdata[2]}<br>%{customdata[3]}<br>%{customdata[4]}"
                  "<br>%{customdata[5]}<extra></extra>")
HOVER_LINES = 5


def _f(value, fmt: str, scale: float = 1.0) -> str:
    return fmt.format(float(value) * scale) if finite(value) else "–"


def hover_lines(row) -> list[str]:
    """The card's lines for one row of the points table."""
    first = f"#{int(row['point_id'])} · {row.get('label') or ''}"
    if finite(row.get("perplexity")):  # an LLM point: perplexity is its quality, lower is better
        acc = f"perplexity {_f(row.get('perplexity'), '{:.3f}')} (lower is better)"
        if finite(row.get("perplexity_increase_pct")):
            acc += f" · {_f(row.get('perplexity_increase_pct'), '{:+.1f}')}% vs fp32"
        if finite(row.get("accuracy")):
            acc += f" · zero-shot accuracy {_f(row.get('accuracy'), '{:.1f}', 100)}%"
        lat = f"prefill p50 {_f(row.get('latency_ms_p50'), '{:.3g}')} ms · decode " \
              f"{_f(row.get('decode_tokens_per_s'), '{:.1f}')} tokens/s"
        size = (f"size {_f(row.get('size_kb'), '{:.1f}')} KB written · ideal "
                f"{_f(row.get('ideal_size_kb'), '{:.1f}')} KB (estimate)")
        return [first, acc, lat, size, _tail(row)]
    acc = f"accuracy {_f(row.get('accuracy'), '{:.2f}', 100)}%"
    if row.get("accuracy_ci95_text"):  # the 95% interval and the paired change, or "no measurable change"
        acc += f" [{row['accuracy_ci95_text']}]"
    if row.get("change_vs_baseline"):
        acc += f" · {row['change_vs_baseline']}"
    elif finite(row.get("accuracy_delta_pts")):
        acc += f" ({_f(row.get('accuracy_delta_pts'), '{:+.2f}')} points)"
    lat = f"latency p50 {_f(row.get('latency_ms_p50'), '{:.3g}')} ms"
    if finite(row.get("speedup")):
        s = float(row["speedup"])
        lat += f" · {s:.2f}x faster" if s >= 1 else f" · {1 / s:.2f}x SLOWER than dense fp32"
    size = f"size {_f(row.get('size_kb'), '{:.1f}')} KB"
    if finite(row.get("compression")):
        size += f" · {float(row['compression']):.1f}x smaller"
    return [first, acc, lat, size, _tail(row)]


def _tail(row) -> str:
    tail = ("on this chart's front · " if row.get("front_here") else "")
    if row.get("host"):  # a Ray sweep: latencies compare only within one machine
        tail += f"host: {row['host']} · "
    if row.get("conditions"):  # busy machine, other thread count: said on the card itself
        tail += f"{row['conditions']} · "
    return tail + "click for the full record"


def hover_data(df: pd.DataFrame, front: list[bool] | None = None) -> tuple[list[list], str]:
    """customdata rows ([point id, five card lines]) and the hover template using them. ``front``: whether
    each row is on the front drawn by this chart (None: the table's own ``pareto`` column)."""
    flags = front if front is not None else [bool(p) for p in df.get("pareto", [False] * len(df))]
    custom = []
    for row, on in zip(df.to_dict("records"), flags):
        row["front_here"] = on
        custom.append([int(row["point_id"]), *hover_lines(row)])
    return custom, HOVER_TEMPLATE
