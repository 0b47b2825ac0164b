"""The encodings every figure shares, and the empty placeholder figure.

Colour = bit width, marker symbol = execution, a ring around a marker = on the Pareto front
(max accuracy, min latency, min size). Units are on every axis and estimated figures are
labelled "(estimate)".
"""
from __future__ import annotations

import plotly.graph_objects as go

BIT_COLORS = {32: "#4C78A8", 16: "#72B7B2", 8: "#54A24B", 6: "#B8A300", 4: "#F58518", 3: "#B279A2",
              2: "#E45756"}
EXECUTION_SYMBOLS = {"dense": "circle", "sparse": "diamond"}
EXECUTION_DASH = {"dense": "solid", "sparse": "dot"}
RUN_COLORS = ("#5B4BDB", "#E45756", "#54A24B", "#F58518", "#4C78A8", "#B279A2", "#72B7B2", "#9D755D")
FRONT_RING = dict(color="#1F1D2B", width=2)
# a library peer (``results.peers``): a dark cross, apart from every bit colour and execution symbol
PEER_MARKER = dict(size=13, symbol="x", color="#1F1D2B", line=dict(color="white", width=1))
# No named template: assigning one deep-copies it on every figure (slow when charts redraw live).
AXIS_STYLE = dict(gridcolor="#E9E7F2", zerolinecolor="#D5D2E6", linecolor="#B9B5CC", showline=True,
                  ticks="outside", tickcolor="#B9B5CC")
# The legend is a compact key in rows under the plot (anchored to the figure's bottom edge, so it never
# covers the x-axis title): a legend beside a chart took ~40% of its width and clipped its last items.
LEGEND = dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left",
              title_side="left", font=dict(size=11), itemwidth=30, tracegroupgap=0)
LAYOUT = dict(paper_bgcolor="white", plot_bgcolor="white", font=dict(family="Helvetica, Arial, sans-serif",
              size=12, color="#2A2838"), height=460, margin=dict(l=60, r=20, t=60, b=55),
              legend=dict(LEGEND, title_text="bit width · execution"),
              hoverlabel=dict(align="left", font=dict(size=11)))
# Latency spans a decade or more (max / min): a log axis, else most points crowd at the left edge.
LOG_AXIS_SPAN = 10.0


def bit_color(bits) -> str:
    try:
        return BIT_COLORS.get(int(bits), "#7F7F7F")
    except (TypeError, ValueError):
        return "#7F7F7F"


def execution_symbol(execution) -> str:
    return EXECUTION_SYMBOLS.get(str(execution), "square")


def empty_figure(title: str, message: str = "no measured points yet") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(**LAYOUT, title=title)
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#888"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


# What colour can show on the scatter charts (marker symbol stays the execution).
ENCODINGS = {"bits": "bit width", "prune_ratio": "pruning ratio", "prune_method": "prune method",
             "execution": "execution"}
RATIO_COLORS = ("#FDE725", "#B5DE2B", "#6ECE58", "#35B779", "#1F9E89", "#26828E", "#31688E", "#3E4989",
                "#482878", "#440154")  # viridis, light = little pruning, dark = much


def encoding_colors(field: str, values) -> dict:
    """One colour per distinct value of ``field`` (bits keep their fixed colours everywhere)."""
    distinct = sorted({v for v in values}, key=lambda v: (str(type(v)), v))
    if field == "bits":
        return {v: bit_color(v) for v in distinct}
    if field == "prune_ratio":
        return {v: RATIO_COLORS[min(len(RATIO_COLORS) - 1, int(float(v) * len(RATIO_COLORS)))] for v in distinct}
    if field not in ENCODINGS:
        raise ValueError(f"cannot colour by {field!r}; choose one of {', '.join(ENCODINGS)}")
    return {v: RUN_COLORS[i % len(RUN_COLORS)] for i, v in enumerate(distinct)}


def log_ticks(values) -> dict:
    """Readable ticks for a log axis: 1-2-5 steps with full numbers ("5, 10, 20, 50, 100"), not plotly's
    "5 10 2 5 100" minor labels."""
    import math

    vals = [float(v) for v in values if v is not None and math.isfinite(float(v)) and float(v) > 0]
    if not vals:
        return {}
    lo, hi = min(vals), max(vals)
    ticks = []
    for exp in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            t = m * 10 ** exp
            if lo / 1.6 <= t <= hi * 1.6:
                ticks.append(t)
    if len(ticks) > 9:  # a wide range: decades only
        ticks = [t for t in ticks if f"{t:g}".lstrip("0.").startswith("1")]
    return {"tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]}


def spans_decades(values, ratio: float = LOG_AXIS_SPAN) -> bool:
    """Whether positive ``values`` span ``ratio`` or more (max / min): a log axis shows them apart."""
    import math

    vals = [float(v) for v in values if v is not None and math.isfinite(float(v)) and float(v) > 0]
    return len(vals) > 1 and max(vals) / min(vals) >= ratio


def label_position(x: float, y: float, xs, ys, log_x: bool = False) -> str:
    """A text position that points a label into the chart, away from the nearest edges (a label centred
    on a point at the edge is cut in half)."""
    import math

    def share(v, vals, log):
        vals = [float(u) for u in vals if u is not None and math.isfinite(float(u)) and (not log or float(u) > 0)]
        if not vals or (log and v <= 0):
            return 0.5
        f = (lambda u: math.log10(u)) if log else (lambda u: u)
        lo, hi = f(min(vals)), f(max(vals))
        return 0.5 if hi == lo else (f(v) - lo) / (hi - lo)

    vertical = "bottom" if share(y, ys, False) > 0.5 else "top"
    horizontal = "left" if share(x, xs, log_x) > 0.5 else "right"
    return f"{vertical} {horizontal}"
