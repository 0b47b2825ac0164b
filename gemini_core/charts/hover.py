"""The hover card of a measured point: five short lines (what it is, quality, latency, size, front).

The quality line is the run's quality metric (``results.metrics``) with its interval and its paired change
(or "no measurable change"); the latency line says what the kind times and adds the kind's own figures.
The full record is one click away (the dashboard's side panel), so the card never covers the chart.
``customdata[0]`` is always the point id: the pages read it back from a chart selection.
"""
from __future__ import annotations

import pandas as pd

from gemini_core.kinds.registry import KindInfo
from gemini_core.results.metrics import QualityMetric, finite, get_metric, kind_of_rows

HOVER_TEMPLATE = ("<b>%{customdata[1]}</b><br>%{customdata[2]}<br>%{customdata[3]}<br>%{customdata[4]}"
                  "<br>%{customdata[5]}<extra></extra>")
HOVER_LINES = 5


def _f(value, fmt: str, scale: float = 1.0) -> str:
    return fmt.format(float(value) * scale) if finite(value) else "–"


def hover_lines(row, kind: KindInfo | None = None, metric: QualityMetric | None = None) -> list[str]:
    """The card's lines for one row of the points table (``kind``/``metric``: the table's; None: the row's)."""
    kind = kind or kind_of_rows([row])
    metric = metric or get_metric(kind.quality_metric)
    first = f"#{int(row['point_id'])} · {row.get('label') or ''}"
    quality = f"{metric.label} {metric.format(row.get(metric.column))}"
    if not metric.higher_is_better:
        quality += " (lower is better)"
    interval = metric.interval_text(row)
    if interval != "-":  # the 95% interval and the paired change, or "no measurable change"
        quality += f" [{interval}]"
    if row.get("change_vs_baseline") not in (None, "", "-"):
        quality += f" · {row['change_vs_baseline']}"
    elif finite(row.get(metric.change_column)):
        quality += f" ({metric.change_text(row[metric.change_column], 2)} vs dense fp32)"
    lat = f"{kind.latency_heading.split(' p50')[0]} p50 {_f(row.get('latency_ms_p50'), '{:.3g}')} ms"
    if finite(row.get("speedup")):
        s = float(row["speedup"])
        lat += f" · {s:.2f}x faster" if s >= 1 else f" · {1 / s:.2f}x SLOWER than dense fp32"
    for column in kind.extra_columns:  # the kind's own figures, where measured
        if finite(row.get(column.name)) and row.get(column.name) != row.get("latency_ms_p50"):
            lat += f" · {column.heading} {_f(row.get(column.name), column.fmt, column.scale)}"
    size = f"size {_f(row.get('size_kb'), '{:.1f}')} KB"
    if finite(row.get("compression")):
        size += f" · {float(row['compression']):.1f}x smaller"
    return [first, quality, lat, size, _tail(row)]


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
    kind = kind_of_rows(df)
    metric = get_metric(kind.quality_metric)
    custom = []
    for row, on in zip(df.to_dict("records"), flags):
        row["front_here"] = on
        custom.append([int(row["point_id"]), *hover_lines(row, kind, metric)])
    return custom, HOVER_TEMPLATE
