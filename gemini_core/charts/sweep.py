"""The sweep charts: a points table (``gemini_core.results.table.points_frame``) in, ``go.Figure`` out.

Quality vs latency / size / the kind's own figures, latency and size vs prune ratio, sparse vs dense,
several runs' fronts overlaid, and the report's front with the chosen point starred. The quality axis is
the run's quality metric (``results.metrics``: its unit, its direction, a log scale where it spans orders
of magnitude); the latency axis says what the kind times. Encodings: see ``charts.style``.
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gemini_core.charts.hover import hover_data
from gemini_core.charts.style import (
    AXIS_STYLE,
    ENCODINGS,
    EXECUTION_DASH,
    FRONT_RING,
    LAYOUT,
    PEER_MARKER,
    RUN_COLORS,
    bit_color,
    empty_figure,
    encoding_colors,
    execution_symbol,
    label_position,
    log_ticks,
    spans_decades,
)
from gemini_core.kinds.registry import Column, KindInfo
from gemini_core.results.metrics import QualityMetric, get_metric, kind_of_rows, metric_for_column
from gemini_core.results.pareto import axis_sense, finite, front_for_axes
from gemini_core.results.peers import PEER_FIELD, PEER_NAME, only_peers, without_peers
from gemini_core.results.table import ok_points, reference_row


def _kind_metric(df) -> tuple[KindInfo, QualityMetric]:
    kind = kind_of_rows(df)
    return kind, get_metric(kind.quality_metric)


def latency_name(kind: KindInfo) -> str:
    """'latency', 'prefill latency': what the kind's latency column times, for a chart title."""
    what = kind.latency_heading.split(" p50")[0]
    return what if what == "latency" else f"{what} latency"


def _title(metric: QualityMetric, against: str) -> str:
    """'Accuracy vs latency', 'Perplexity vs size (lower is better)' (only the surprising direction is said)."""
    name = metric.label[:1].upper() + metric.label[1:]
    return f"{name} vs {against}" + ("" if metric.higher_is_better else " (lower is better)")


def _groups(df: pd.DataFrame):
    """(bits, execution, frame) groups of uniform points in a stable order: high bits first, dense before
    sparse. Per-layer points (mixed bits) are drawn apart, see ``scatter_figure``."""
    if "per_layer" in df.columns:
        df = df[~df["per_layer"].fillna(False).astype(bool)]
    keys = sorted({(int(b), str(e)) for b, e in zip(df["bits"], df["execution"])},
                  key=lambda k: (-k[0], k[1] != "dense", k[1]))
    for bits, execution in keys:
        yield bits, execution, df[(df["bits"] == bits) & (df["execution"] == execution)]


def error_bars(g: pd.DataFrame, y: str, y_scale: float = 1.0) -> dict | None:
    """Plotly error bars from each point's 95% interval (its quality metric's ``interval``) when ``y`` is a
    quality metric's column; None otherwise, or when no point has an interval."""
    metric = metric_for_column(y)
    if metric is None or y not in g.columns:
        return None
    plus, minus, any_interval = [], [], False
    for row in g.to_dict("records"):
        ci, value = metric.interval(row), row.get(y)
        ok = ci is not None and finite(value)
        any_interval = any_interval or ok
        plus.append((ci[1] - value) * y_scale if ok else 0.0)
        minus.append((value - ci[0]) * y_scale if ok else 0.0)
    if not any_interval:
        return None
    return dict(type="data", symmetric=False, array=plus, arrayminus=minus, thickness=1, width=3, color="#888")


def _encoded_groups(df: pd.DataFrame, color_by: str):
    """(legend name, colour, execution, frame) groups of uniform points, coloured by ``color_by``."""
    if "per_layer" in df.columns:
        df = df[~df["per_layer"].fillna(False).astype(bool)]
    if color_by == "bits":
        for bits, execution, g in _groups(df):
            yield f"{bits}-bit · {execution}", bit_color(bits), execution, g
        return
    values = df[color_by].tolist()
    colors = encoding_colors(color_by, values)
    keys = sorted({(v, str(e)) for v, e in zip(values, df["execution"])},
                  key=lambda k: (str(type(k[0])), k[0], k[1] != "dense", k[1]))
    for value, execution in keys:
        g = df[(df[color_by] == value) & (df["execution"] == execution)]
        shown = f"ratio {float(value):.2f}" if color_by == "prune_ratio" else str(value)
        name = shown if color_by == "execution" else f"{shown} · {execution}"
        yield name, colors[value], execution, g


def scatter_figure(df: pd.DataFrame, x: str, y: str, title: str, x_title: str, y_title: str,
                   log_x: bool = False, y_scale: float = 1.0, x_scale: float = 1.0, color_by: str = "bits",
                   highlight_id: int | None = None, y_range: tuple[float, float] | None = None,
                   log_y: bool = False) -> go.Figure:
    """Scatter of ok points coloured by ``color_by`` (see ``style.ENCODINGS``), symbol = execution.

    The ring marks this chart's own front (``front_for_axes(x, y)``); ``highlight_id`` (the recommended
    point) gets a gold star; ``y_range`` zooms the y axis (in the axis's displayed units). Library peers
    (``results.peers``) are one trace of their own, "library peer", a dark cross named by its library."""
    pts = ok_points(df)
    if pts.empty:
        return empty_figure(title)
    if color_by not in ENCODINGS:
        raise ValueError(f"cannot colour by {color_by!r}; choose one of {', '.join(ENCODINGS)}")
    fig = go.Figure()
    pts = pts.assign(_front=front_for_axes(pts, x, y))
    front = pts[pts["_front"]].sort_values(x)
    if len(front):
        # A hollow ring behind the front points (on top of the colour, not instead of it) and a faint
        # step line joining them.
        fig.add_trace(go.Scatter(
            x=(front[x] * x_scale).tolist(), y=(front[y] * y_scale).tolist(), mode="markers+lines",
            name="Pareto front", legendgroup="front", hoverinfo="skip",
            line=dict(color="#B9B5CC", width=1, shape="hv"),
            marker=dict(size=20, symbol="circle-open", line=FRONT_RING, color=FRONT_RING["color"])))
    own = without_peers(pts)
    for name, color, execution, g in _encoded_groups(own, color_by):
        custom, template = hover_data(g, g["_front"].tolist())
        fig.add_trace(go.Scatter(
            x=(g[x] * x_scale).tolist(), y=(g[y] * y_scale).tolist(), mode="markers",
            name=name, legendgroup=name, error_y=error_bars(g, y, y_scale),
            marker=dict(size=11, color=color, symbol=execution_symbol(execution),
                        line=dict(color="white", width=1)),
            customdata=custom, hovertemplate=template))
    mixed = own[own["per_layer"].fillna(False).astype(bool)] if "per_layer" in own.columns else own.iloc[:0]
    if len(mixed):  # per-layer (allocator) points: a star, coloured by the config's own (most common) bits
        custom, template = hover_data(mixed, mixed["_front"].tolist())
        fig.add_trace(go.Scatter(
            x=(mixed[x] * x_scale).tolist(), y=(mixed[y] * y_scale).tolist(), mode="markers",
            name="per-layer (allocator)", legendgroup="per-layer", error_y=error_bars(mixed, y, y_scale),
            marker=dict(size=16, color=[bit_color(b) for b in mixed["bits"]], symbol="star",
                        line=dict(color="#1F1D2B", width=1)),
            customdata=custom, hovertemplate=template))
    _peer_trace(fig, pts, x, y, x_scale, y_scale, log_x)
    if highlight_id is not None:
        _star(fig, pts, highlight_id, x, y, x_scale, y_scale, log_x, "recommended")
    legend = dict(LAYOUT["legend"], title_text=f"{ENCODINGS[color_by]} · execution")
    fig.update_layout(**{**LAYOUT, "legend": legend}, title=title)
    fig.update_xaxes(title_text=x_title, type="log" if log_x else "linear", **AXIS_STYLE,
                     **(log_ticks(pts[x] * x_scale) if log_x else {}))
    fig.update_yaxes(title_text=y_title, type="log" if log_y else "linear", **AXIS_STYLE)
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    else:
        _clamp_quality_axis(fig, pts, y, y_scale, log_y)
    _explain_whiskers(fig, pts, y)
    return fig


def _peer_trace(fig: go.Figure, pts: pd.DataFrame, x: str, y: str, x_scale: float, y_scale: float,
                log_x: bool) -> None:
    """The library peers of ``pts``, if any: measured beside the points, never on the front, never shipped. Each
    name is written on the side that faces into the chart (at the edge it was cut off)."""
    peers = only_peers(pts)
    if peers.empty:
        return
    custom, template = hover_data(peers, [False] * len(peers))
    names = [str(v).replace(" (library)", "") for v in peers[PEER_FIELD]]
    xs, ys = (peers[x] * x_scale).tolist(), (peers[y] * y_scale).tolist()
    sides = [label_position(px, py, pts[x] * x_scale, pts[y] * y_scale, log_x) for px, py in zip(xs, ys)]
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers+text", name=PEER_NAME,
        legendgroup="peer", text=names, textposition=sides, cliponaxis=False,
        textfont=dict(size=10, color="#5E5A72"), error_y=error_bars(peers, y, y_scale), marker=PEER_MARKER,
        customdata=custom, hovertemplate=template))


def _star(fig: go.Figure, pts: pd.DataFrame, point_id: int, x: str, y: str, x_scale: float, y_scale: float,
          log_x: bool, word: str, name: str | None = None) -> None:
    """A gold star on one point, labelled "<word> #id" on the side that faces into the chart. The label
    may run over the plot's edge (``cliponaxis`` off) rather than be cut."""
    row = pts[pts["point_id"] == point_id]
    if row.empty:
        return
    r = row.iloc[0]
    px, py = float(r[x]) * x_scale, float(r[y]) * y_scale
    custom, template = hover_data(row, row["_front"].tolist() if "_front" in row.columns else None)
    fig.add_trace(go.Scatter(
        x=[px], y=[py], mode="markers+text", name=name or word, text=[f"{word} #{int(r['point_id'])}"],
        textposition=label_position(px, py, pts[x] * x_scale, pts[y] * y_scale, log_x), cliponaxis=False,
        textfont=dict(size=12, color="#1F1D2B", weight="bold"),
        marker=dict(size=24, symbol="star", color="#FFD400", line=dict(color="#1F1D2B", width=1.5)),
        customdata=custom, hovertemplate=template))


def _clamp_quality_axis(fig: go.Figure, pts: pd.DataFrame, y: str, y_scale: float, log_y: bool) -> None:
    """A bounded metric's axis (accuracy 0-100%) stops at its bound: whiskers and padding must not draw an
    axis that runs past 100%."""
    metric = metric_for_column(y)
    if metric is None or metric.display_range is None or log_y:
        return
    values = pd.to_numeric(pts[y], errors="coerce") * y_scale
    ends = [values.min(), values.max()]
    for row in pts.to_dict("records"):
        ci = metric.interval(row)
        if ci is not None:
            ends.extend(v * y_scale for v in ci)
    ends = [float(v) for v in ends if finite(v)]
    if not ends:
        return
    low_bound, high_bound = metric.display_range
    pad = max(0.5, (max(ends) - min(ends)) * 0.04)
    fig.update_yaxes(range=[max(low_bound, min(ends) - pad), min(high_bound, max(ends) + pad)])
    fig.update_traces(cliponaxis=False, selector=dict(type="scatter"))  # a marker at 100% is not cut


def whisker_note(pts: pd.DataFrame, y: str) -> str | None:
    """'whiskers: 95% interval (Wilson), n = 270 test examples' for the points drawn with whiskers."""
    metric = metric_for_column(y)
    if metric is None or error_bars(pts, y) is None:
        return None
    sizes = sorted({n for n in (metric.sample_size(r) for r in pts.to_dict("records")) if n is not None})
    n = (f", n = {sizes[0]}" if len(sizes) == 1 else f", n = {sizes[0]}-{sizes[-1]}" if sizes else "")
    return f"whiskers: 95% interval ({metric.interval_method}){n} {metric.sample_name if sizes else ''}".rstrip()


def _explain_whiskers(fig: go.Figure, pts: pd.DataFrame, y: str) -> None:
    """The note goes under the title (a subtitle): on the plot it covered the points at 100%."""
    note = whisker_note(pts, y)
    if note:
        fig.update_layout(title_subtitle=dict(text=note, font=dict(size=11, color="#5E5A72")),
                          margin=dict(LAYOUT["margin"], t=80))


def fig_quality_vs_latency(df: pd.DataFrame, **options) -> go.Figure:
    """The run's quality metric against the latency its kind times. ``options``: ``color_by``,
    ``highlight_id``, ``y_range`` (in the metric's shown unit), see ``scatter_figure``."""
    kind, metric = _kind_metric(df)
    log_x = spans_decades(ok_points(df)["latency_ms_p50"]) if len(df) else False
    x_title = kind.latency_heading[:-1] + ", log scale)" if log_x and kind.latency_heading.endswith(")") \
        else kind.latency_heading + (" (log scale)" if log_x else "")
    return scatter_figure(df, "latency_ms_p50", metric.column, _title(metric, latency_name(kind)),
                          x_title, metric.axis_title, y_scale=metric.scale, log_y=metric.log_axis, log_x=log_x,
                          **options)


def fig_quality_vs_size(df: pd.DataFrame, **options) -> go.Figure:
    kind, metric = _kind_metric(df)
    size = kind.size_heading.split(" (")[0]
    return scatter_figure(df, "size_kb", metric.column, _title(metric, "size"), f"{size} (KB, log scale)",
                          metric.axis_title, log_x=True, y_scale=metric.scale, log_y=metric.log_axis, **options)


def fig_quality_vs(df: pd.DataFrame, column: Column, **options) -> go.Figure:
    """The run's quality metric against one of the kind's own figures (``KindInfo.extra_columns``)."""
    _, metric = _kind_metric(df)
    better = f"{'higher' if axis_sense(column.name) == 'max' else 'lower'} is better"
    heading = column.heading
    x_title = f"{heading[:-1]}, {better})" if heading.endswith(")") else f"{heading} ({better})"
    return scatter_figure(df, column.name, metric.column, _title(metric, heading.split(" (")[0]), x_title,
                          metric.axis_title, x_scale=column.scale, y_scale=metric.scale, log_y=metric.log_axis,
                          **options)


def own_figure_columns(df: pd.DataFrame) -> list[Column]:
    """The kind's own figures worth a quality chart: measured, with a known direction, and not the latency
    column again under another name (a figure identical to it would only repeat the latency chart)."""
    kind = kind_of_rows(df)
    pts = ok_points(df)
    out = []
    for column in kind.extra_columns:
        if column.name not in pts.columns or axis_sense(column.name) is None:
            continue
        values = pd.to_numeric(pts[column.name], errors="coerce")
        if values.notna().any() and not values.equals(pd.to_numeric(pts["latency_ms_p50"], errors="coerce")):
            out.append(column)
    return out


SETTING_DIMENSIONS = (("prune_ratio", "prune ratio", 1.0), ("finetune_steps", "fine-tune steps", 1.0),
                      ("bits", "bits", 1.0))


def fig_parallel(df: pd.DataFrame) -> go.Figure:
    """Parallel coordinates: one line per point across its settings and figures (for grids with many
    dimensions); categorical settings (method, execution) get one tick per value. Drag on an axis to filter.
    The lines are coloured by the quality metric, the better end bright whichever way it runs."""
    title = "Every point across settings and figures (drag along an axis to filter)"
    pts = ok_points(df)
    if pts.empty:
        return empty_figure(title)
    kind, metric = _kind_metric(df)
    dims = []
    for field, label in (("prune_method", "prune method"), ("execution", "execution")):
        values = sorted({str(v) for v in pts[field]})
        if len(values) > 1:
            codes = [values.index(str(v)) for v in pts[field]]
            dims.append(dict(label=label, values=codes, tickvals=list(range(len(values))), ticktext=values))
    figures = (*SETTING_DIMENSIONS, (metric.column, metric.heading, metric.scale),
               ("latency_ms_p50", f"{latency_name(kind)} (ms)", 1.0), ("size_kb", "size (KB)", 1.0))
    for field, label, scale in figures:
        col = pd.to_numeric(pts[field], errors="coerce") * scale
        if col.notna().any():
            dims.append(dict(label=label, values=col.fillna(col.min()).round(4).tolist()))
    color = (pd.to_numeric(pts[metric.column], errors="coerce") * metric.scale).round(3).tolist()
    # Short axis labels in a smaller font: the long ones ran into each other over narrow axes.
    fig = go.Figure(go.Parcoords(
        dimensions=dims, labelfont=dict(size=11), rangefont=dict(size=9),
        line=dict(color=color, colorscale="Viridis", reversescale=not metric.higher_is_better,
                  showscale=True, colorbar=dict(title=metric.heading))))
    fig.update_layout(**{**LAYOUT, "margin": dict(l=70, r=40, t=90, b=40)}, title=title)
    return fig


def _lines_by_ratio(fig, df, y, row, col, y_scale=1.0, showlegend=True):
    for bits, execution, g in _groups(df):
        g = g.sort_values("prune_ratio")
        custom, template = hover_data(g)
        # Several methods or fine-tune settings at one ratio: markers only, a line would zigzag.
        one_per_ratio = g["prune_ratio"].is_unique
        fig.add_trace(go.Scatter(
            x=g["prune_ratio"].tolist(), y=(g[y] * y_scale).tolist(),
            mode="lines+markers" if one_per_ratio else "markers",
            name=f"{bits}-bit · {execution}", legendgroup=f"{bits}-{execution}", showlegend=showlegend,
            line=dict(color=bit_color(bits), dash=EXECUTION_DASH.get(execution, "solid")),
            marker=dict(size=9, color=bit_color(bits), symbol=execution_symbol(execution)),
            customdata=custom, hovertemplate=template), row=row, col=col)


def fig_metric_vs_ratio(df: pd.DataFrame) -> go.Figure:
    """Latency and size against the prune ratio, one line per bit width (dotted = sparse)."""
    pts = ok_points(df)
    title = "Latency and size vs prune ratio"
    if pts.empty:
        return empty_figure(title)
    kind = kind_of_rows(df)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("latency p50 (ms)", "checkpoint size (KB)"),
                        horizontal_spacing=0.1)
    _lines_by_ratio(fig, pts, "latency_ms_p50", 1, 1)
    _lines_by_ratio(fig, pts, "size_kb", 1, 2, showlegend=False)
    fig.update_layout(**LAYOUT, title=title)
    fig.update_xaxes(title_text="prune ratio (share of weights / channels removed)", range=[-0.03, 1.0],
                     **AXIS_STYLE)
    fig.update_yaxes(**AXIS_STYLE)
    fig.update_yaxes(title_text=kind.latency_heading, row=1, col=1)
    fig.update_yaxes(title_text="size (KB)", row=1, col=2)
    return fig


def fig_sparse_vs_dense(df: pd.DataFrame) -> go.Figure:
    """Side by side: latency vs prune ratio with dense kernels (left) and sparse kernels (right)."""
    pts = ok_points(df)
    title = "Sparse vs dense execution"
    if pts.empty:
        return empty_figure(title)
    kind = kind_of_rows(df)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("dense execution", "sparse execution"),
                        shared_yaxes=True, horizontal_spacing=0.06)
    for col, execution in ((1, "dense"), (2, "sparse")):
        part = pts[pts["execution"] == execution]
        if part.empty:
            fig.add_annotation(text=f"no {execution} points in this sweep", showarrow=False,
                               xref="x domain" if col == 1 else "x2 domain",
                               yref="y domain" if col == 1 else "y2 domain", x=0.5, y=0.5,
                               font=dict(color="#888"))
            continue
        _lines_by_ratio(fig, part, "latency_ms_p50", 1, col)
    ref = reference_row(df)
    if ref is not None and finite(ref["latency_ms_p50"]):
        for col in (1, 2):
            label = {"annotation_text": "dense fp32 reference", "annotation_position": "top left"} if col == 1 else {}
            fig.add_hline(y=float(ref["latency_ms_p50"]), line=dict(color="#999", dash="dash", width=1),
                          row=1, col=col, **label)
    fig.update_layout(**LAYOUT, title=title)
    fig.update_xaxes(title_text="prune ratio", range=[-0.03, 1.0], **AXIS_STYLE)
    fig.update_yaxes(**AXIS_STYLE)
    fig.update_yaxes(title_text=kind.latency_heading, row=1, col=1)
    return fig


def fig_fronts_overlay(frames: Mapping[str, pd.DataFrame]) -> go.Figure:
    """Quality vs latency of several runs: all points faint, each run's front as a line (each run in its own
    quality metric; runs of different kinds share the chart, their axis titles joined)."""
    title = "Pareto fronts compared (quality vs latency)"
    if not frames:
        return empty_figure(title, "choose runs to compare")
    fig = go.Figure()
    metrics, latencies, drawn = {}, {}, []
    for i, (name, df) in enumerate(frames.items()):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        pts = ok_points(df)
        if pts.empty:
            continue
        kind, metric = _kind_metric(pts)
        metrics[metric.name], latencies[kind.latency_heading] = metric, True
        quality, scale = metric.column, metric.scale
        drawn.append(pts)
        custom, template = hover_data(pts)
        fig.add_trace(go.Scatter(
            x=pts["latency_ms_p50"].tolist(), y=(pts[quality] * scale).tolist(), mode="markers",
            name=f"{name} (all points)", legendgroup=name, opacity=0.35, error_y=error_bars(pts, quality, scale),
            marker=dict(size=8, color=color, symbol=[execution_symbol(e) for e in pts["execution"]]),
            customdata=custom, hovertemplate=template))
        # Front in this 2-D view: quality vs latency only.
        mask = front_for_axes(pts, "latency_ms_p50", quality)
        front = pts[mask].sort_values("latency_ms_p50")
        fcustom, _ = hover_data(front)
        fig.add_trace(go.Scatter(
            x=front["latency_ms_p50"].tolist(), y=(front[quality] * scale).tolist(), mode="lines+markers",
            name=f"{name} front", legendgroup=name, line=dict(color=color, width=2, shape="hv"),
            marker=dict(size=11, color=color, line=FRONT_RING), customdata=fcustom, hovertemplate=template))
    fig.update_layout(**LAYOUT, title=title)
    if len(metrics) == 1:  # whiskers in one metric: say what they are, as on the single-run charts
        _explain_whiskers(fig, pd.concat(drawn), next(iter(metrics.values())).column)
    fig.update_layout(legend_title_text="run")
    fig.update_xaxes(title_text=" · ".join(latencies) or "latency p50 (ms)", **AXIS_STYLE)
    log = bool(metrics) and all(m.log_axis for m in metrics.values())
    fig.update_yaxes(title_text=" · ".join(m.axis_title for m in metrics.values()) or "quality",
                     type="log" if log else "linear", **AXIS_STYLE)
    return fig


def fig_report_front(df: pd.DataFrame, chosen_id: int | None = None) -> go.Figure:
    """The run's quality vs latency with the front ringed and the chosen point starred: the page's chart
    (same style, axes and whiskers), so the report shows what the dashboard showed."""
    _, metric = _kind_metric(df)
    fig = fig_quality_vs_latency(df)
    name = metric.label[:1].upper() + metric.label[1:]
    fig.update_layout(title_text=f"{name} vs latency: chosen point starred, front ringed")
    pts = ok_points(df)
    if chosen_id is not None and len(pts):
        log_x = fig.layout.xaxis.type == "log"
        _star(fig, pts, chosen_id, "latency_ms_p50", metric.column, 1.0, metric.scale, log_x, "chosen",
              name="chosen point")
    return fig


def sweep_figures(df: pd.DataFrame) -> dict[str, go.Figure]:
    """Every sweep chart by a file-friendly name (used by the pages, the exports and the report): the
    quality metric against latency, size and each of the kind's own figures, latency and size against the
    prune ratio, and sparse vs dense execution when the points ran on those executions."""
    _, metric = _kind_metric(df)
    figs = {f"{metric.name}_vs_latency": fig_quality_vs_latency(df), f"{metric.name}_vs_size": fig_quality_vs_size(df)}
    for column in own_figure_columns(df):
        figs[f"{metric.name}_vs_{column.name}"] = fig_quality_vs(df, column)
    figs["latency_size_vs_ratio"] = fig_metric_vs_ratio(df)
    pts = ok_points(df)
    if len(pts) and pts["execution"].isin(("dense", "sparse")).any():  # the executions this chart compares
        figs["sparse_vs_dense"] = fig_sparse_vs_dense(df)
    return figs
