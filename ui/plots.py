"""Figures for the dashboard and the HTML report: records / DataFrames in, ``go.Figure`` out.

No Streamlit in here, so every builder can be tested and exported (PNG, HTML) on its own.
Every figure uses the same encodings: colour = bit width, marker symbol = execution, a ring
around a marker = on the Pareto front (max accuracy, min latency, min size). Units are on
every axis and estimated figures are labelled "(estimate)".
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# -- encodings -------------------------------------------------------------------------------
from gemini_core.results.pareto import DEFAULT_OBJECTIVES, finite as _finite, pareto_front  # noqa: F401

BIT_COLORS = {32: "#4C78A8", 16: "#72B7B2", 8: "#54A24B", 6: "#B8A300", 4: "#F58518", 3: "#B279A2",
              2: "#E45756"}
EXECUTION_SYMBOLS = {"dense": "circle", "sparse": "diamond"}
EXECUTION_DASH = {"dense": "solid", "sparse": "dot"}
RUN_COLORS = ("#5B4BDB", "#E45756", "#54A24B", "#F58518", "#4C78A8", "#B279A2", "#72B7B2", "#9D755D")
FRONT_RING = dict(color="#1F1D2B", width=2)
CONFIG_FIELDS = ("prune_method", "prune_ratio", "finetune_steps", "bits", "granularity", "execution")
NUMERIC_FIELDS = ("accuracy", "macro_f1", "latency_ms_p50", "latency_ms_p90", "size_bytes", "ideal_size_bytes",
                  "params", "nonzero_params", "macs", "peak_memory_bytes", "threads", "batch_size", "seconds")
# No named template: assigning one deep-copies it on every figure (slow when charts redraw live).
AXIS_STYLE = dict(gridcolor="#E9E7F2", zerolinecolor="#D5D2E6", linecolor="#B9B5CC", showline=True,
                  ticks="outside", tickcolor="#B9B5CC")
LAYOUT = dict(paper_bgcolor="white", plot_bgcolor="white", font=dict(family="Helvetica, Arial, sans-serif",
              size=12, color="#2A2838"), height=420, margin=dict(l=60, r=20, t=60, b=55),
              legend=dict(title_text="bit width · execution", font=dict(size=11)),
              hoverlabel=dict(align="left", font=dict(size=11)))


def bit_color(bits) -> str:
    try:
        return BIT_COLORS.get(int(bits), "#7F7F7F")
    except (TypeError, ValueError):
        return "#7F7F7F"


def execution_symbol(execution) -> str:
    return EXECUTION_SYMBOLS.get(str(execution), "square")


# -- Pareto -----------------------------------------------------------------------------------
# -- records -> table ---------------------------------------------------------------------------
def is_reference(row: Mapping) -> bool:
    """The unpruned 32-bit dense point every ratio is measured against."""
    return (str(row.get("prune_method")) == "none" or float(row.get("prune_ratio") or 0) == 0) \
        and int(row.get("bits") or 0) == 32 and str(row.get("execution")) == "dense"


def points_frame(records: Iterable[Mapping], objectives: Mapping[str, str] = DEFAULT_OBJECTIVES) -> pd.DataFrame:
    """One row per point with flat config columns and the ratios against the dense reference.

    Added columns: ``is_reference``; ``speedup`` (reference p50 latency / this p50: below 1.0 means
    slower than the reference); ``compression`` (reference size / this size); ``accuracy_delta_pts``
    (percentage points vs the reference); ``pareto``; ``size_kb``, ``ideal_size_kb`` (estimate).
    """
    rows = []
    for rec in records:
        cfg = rec.get("config") or {}
        row = {k: v for k, v in rec.items() if k not in ("config", "traceback")}
        for field in CONFIG_FIELDS:
            row[field] = cfg.get(field, rec.get(field))
        row["per_layer"] = bool(cfg.get("layer_overrides"))  # an allocator / per-layer point
        rows.append(row)
    columns = ["point_id", "run_id", "label", "status", "error", *CONFIG_FIELDS, *NUMERIC_FIELDS,
               "backend", "device", "host", "reused"]
    df = pd.DataFrame(rows)
    for col in columns:
        if col not in df.columns:
            df[col] = None
    if "per_layer" not in df.columns:
        df["per_layer"] = pd.Series(dtype=bool)
    if df.empty:
        for col in ("is_reference", "pareto"):
            df[col] = pd.Series(dtype=bool)
        for col in ("speedup", "compression", "accuracy_delta_pts", "size_kb", "ideal_size_kb"):
            df[col] = pd.Series(dtype=float)
        return df
    df["status"] = df["status"].fillna("ok")
    for col in NUMERIC_FIELDS + ("prune_ratio", "finetune_steps", "bits"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["is_reference"] = [is_reference(r) for r in df.to_dict("records")]
    ok = df["status"] == "ok"
    ref = df[df["is_reference"] & ok]
    if len(ref):
        r = ref.iloc[-1]
        df["speedup"] = r["latency_ms_p50"] / df["latency_ms_p50"]
        df["compression"] = r["size_bytes"] / df["size_bytes"]
        df["accuracy_delta_pts"] = (df["accuracy"] - r["accuracy"]) * 100.0
    else:
        df["speedup"] = float("nan")
        df["compression"] = float("nan")
        df["accuracy_delta_pts"] = float("nan")
    df["size_kb"] = df["size_bytes"] / 1024.0
    df["ideal_size_kb"] = df["ideal_size_bytes"] / 1024.0
    df["pareto"] = pareto_front(df, objectives)
    return df


def reference_row(df: pd.DataFrame) -> pd.Series | None:
    ref = df[df["is_reference"] & (df["status"] == "ok")] if len(df) else df
    return ref.iloc[-1] if len(ref) else None


def ok_points(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if len(df) else df


TABLE_COLUMNS = {
    "point_id": "point",
    "label": "configuration",
    "pareto": "front",
    "accuracy_pct": "accuracy (%)",
    "accuracy_delta_pts": "Δ accuracy (points)",
    "latency_ms_p50": "latency p50 (ms)",
    "latency_ms_p90": "latency p90 (ms)",
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


def table_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The sortable points table: readable column names, numbers left numeric (so sorting works)."""
    out = df.copy()
    out["accuracy_pct"] = out["accuracy"] * 100.0 if len(out) else pd.Series(dtype=float)
    cols = [c for c in TABLE_COLUMNS if c in out.columns]
    out = out[cols].rename(columns=TABLE_COLUMNS)
    return out.reset_index(drop=True)


# -- hover --------------------------------------------------------------------------------------
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
]


HOVER_TEMPLATE = "<br>".join(t for _, t in HOVER_FIELDS) + "<extra></extra>"


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalar -> Python
        value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
    return value


def _hover_data(df: pd.DataFrame) -> tuple[list[list], str]:
    """customdata rows (every figure of the point, NaN -> None) and the hover template using them."""
    acc = df["accuracy"] * 100.0
    mem = df["peak_memory_bytes"] / 1024.0
    text = [("on the Pareto front" if p else "") + ("" if not _finite(s) or s >= 1.0 else " · SLOWER than dense fp32")
            for p, s in zip(df["pareto"], df["speedup"])]
    columns = []
    for field, _ in HOVER_FIELDS:
        if field == "accuracy_pct":
            columns.append(acc.tolist())
        elif field == "peak_memory_kb":
            columns.append(mem.tolist())
        elif field == "pareto_text":
            columns.append(text)
        else:
            columns.append(df[field].tolist())
    custom = [[_clean(v) for v in row] for row in zip(*columns)]
    return custom, HOVER_TEMPLATE


# -- figures ------------------------------------------------------------------------------------
def empty_figure(title: str, message: str = "no measured points yet") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(**LAYOUT, title=title)
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#888"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _groups(df: pd.DataFrame):
    """(bits, execution, frame) groups of uniform points in a stable order: high bits first, dense before
    sparse. Per-layer points (mixed bits) are drawn apart, see ``scatter_figure``."""
    if "per_layer" in df.columns:
        df = df[~df["per_layer"].fillna(False).astype(bool)]
    keys = sorted({(int(b), str(e)) for b, e in zip(df["bits"], df["execution"])},
                  key=lambda k: (-k[0], k[1] != "dense", k[1]))
    for bits, execution in keys:
        yield bits, execution, df[(df["bits"] == bits) & (df["execution"] == execution)]


def scatter_figure(df: pd.DataFrame, x: str, y: str, title: str, x_title: str, y_title: str,
                   log_x: bool = False, y_scale: float = 1.0, x_scale: float = 1.0) -> go.Figure:
    """Scatter of ok points: one trace per (bit width, execution); Pareto points ringed."""
    pts = ok_points(df)
    if pts.empty:
        return empty_figure(title)
    fig = go.Figure()
    front = pts[pts["pareto"]]
    if len(front):
        # A hollow ring behind the front points: on top of the colour, not instead of it.
        fig.add_trace(go.Scatter(
            x=(front[x] * x_scale).tolist(), y=(front[y] * y_scale).tolist(), mode="markers",
            name="Pareto front", legendgroup="front", hoverinfo="skip",
            marker=dict(size=20, symbol="circle-open", line=FRONT_RING, color=FRONT_RING["color"])))
    for bits, execution, g in _groups(pts):
        custom, template = _hover_data(g)
        fig.add_trace(go.Scatter(
            x=(g[x] * x_scale).tolist(), y=(g[y] * y_scale).tolist(), mode="markers",
            name=f"{bits}-bit · {execution}", legendgroup=str(bits),
            marker=dict(size=11, color=bit_color(bits), symbol=execution_symbol(execution),
                        line=dict(color="white", width=1)),
            customdata=custom, hovertemplate=template))
    mixed = pts[pts["per_layer"].fillna(False).astype(bool)] if "per_layer" in pts.columns else pts.iloc[:0]
    if len(mixed):  # per-layer (allocator) points: a star, coloured by the config's own (most common) bits
        custom, template = _hover_data(mixed)
        fig.add_trace(go.Scatter(
            x=(mixed[x] * x_scale).tolist(), y=(mixed[y] * y_scale).tolist(), mode="markers",
            name="per-layer (allocator)", legendgroup="per-layer",
            marker=dict(size=16, color=[bit_color(b) for b in mixed["bits"]], symbol="star",
                        line=dict(color="#1F1D2B", width=1)),
            customdata=custom, hovertemplate=template))
    fig.update_layout(**LAYOUT, title=title)
    fig.update_xaxes(title_text=x_title, type="log" if log_x else "linear", **AXIS_STYLE)
    fig.update_yaxes(title_text=y_title, **AXIS_STYLE)
    return fig


def fig_accuracy_vs_latency(df: pd.DataFrame) -> go.Figure:
    return scatter_figure(df, "latency_ms_p50", "accuracy", "Accuracy vs latency",
                          "latency p50 per batch (ms)", "test accuracy (%)", y_scale=100.0)


def fig_accuracy_vs_size(df: pd.DataFrame) -> go.Figure:
    return scatter_figure(df, "size_kb", "accuracy", "Accuracy vs size",
                          "checkpoint size (KB, log scale)", "test accuracy (%)", log_x=True, y_scale=100.0)


def _lines_by_ratio(fig, df, y, row, col, y_scale=1.0, showlegend=True):
    for bits, execution, g in _groups(df):
        g = g.sort_values("prune_ratio")
        custom, template = _hover_data(g)
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
    fig = make_subplots(rows=1, cols=2, subplot_titles=("latency p50 (ms)", "checkpoint size (KB)"),
                        horizontal_spacing=0.1)
    _lines_by_ratio(fig, pts, "latency_ms_p50", 1, 1)
    _lines_by_ratio(fig, pts, "size_kb", 1, 2, showlegend=False)
    fig.update_layout(**LAYOUT, title=title)
    fig.update_xaxes(title_text="prune ratio (share of weights / channels removed)", range=[-0.03, 1.0],
                     **AXIS_STYLE)
    fig.update_yaxes(**AXIS_STYLE)
    fig.update_yaxes(title_text="latency p50 per batch (ms)", row=1, col=1)
    fig.update_yaxes(title_text="size (KB)", row=1, col=2)
    return fig


def fig_sparse_vs_dense(df: pd.DataFrame) -> go.Figure:
    """Side by side: latency vs prune ratio with dense kernels (left) and sparse kernels (right)."""
    pts = ok_points(df)
    title = "Sparse vs dense execution"
    if pts.empty:
        return empty_figure(title)
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
    if ref is not None and _finite(ref["latency_ms_p50"]):
        for col in (1, 2):
            label = {"annotation_text": "dense fp32 reference", "annotation_position": "top left"} if col == 1 else {}
            fig.add_hline(y=float(ref["latency_ms_p50"]), line=dict(color="#999", dash="dash", width=1),
                          row=1, col=col, **label)
    fig.update_layout(**LAYOUT, title=title)
    fig.update_xaxes(title_text="prune ratio", range=[-0.03, 1.0], **AXIS_STYLE)
    fig.update_yaxes(**AXIS_STYLE)
    fig.update_yaxes(title_text="latency p50 per batch (ms)", row=1, col=1)
    return fig


def fig_fronts_overlay(frames: Mapping[str, pd.DataFrame]) -> go.Figure:
    """Accuracy vs latency of several runs: all points faint, each run's front as a line."""
    title = "Pareto fronts compared (accuracy vs latency)"
    if not frames:
        return empty_figure(title, "choose runs to compare")
    fig = go.Figure()
    for i, (name, df) in enumerate(frames.items()):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        pts = ok_points(df)
        if pts.empty:
            continue
        custom, template = _hover_data(pts)
        fig.add_trace(go.Scatter(
            x=pts["latency_ms_p50"].tolist(), y=(pts["accuracy"] * 100).tolist(), mode="markers",
            name=f"{name} (all points)", legendgroup=name, opacity=0.35,
            marker=dict(size=8, color=color, symbol=[execution_symbol(e) for e in pts["execution"]]),
            customdata=custom, hovertemplate=template))
        # Front in this 2-D view: accuracy vs latency only.
        mask = pareto_front(pts, {"accuracy": "max", "latency_ms_p50": "min"})
        front = pts[mask].sort_values("latency_ms_p50")
        fcustom, _ = _hover_data(front)
        fig.add_trace(go.Scatter(
            x=front["latency_ms_p50"].tolist(), y=(front["accuracy"] * 100).tolist(), mode="lines+markers",
            name=f"{name} front", legendgroup=name, line=dict(color=color, width=2, shape="hv"),
            marker=dict(size=11, color=color, line=FRONT_RING), customdata=fcustom, hovertemplate=template))
    fig.update_layout(**LAYOUT, title=title)
    fig.update_layout(legend_title_text="run")
    fig.update_xaxes(title_text="latency p50 per batch (ms)", **AXIS_STYLE)
    fig.update_yaxes(title_text="test accuracy (%)", **AXIS_STYLE)
    return fig


def fig_training(history: Sequence[Mapping]) -> go.Figure:
    """Baseline training: mean train loss and validation accuracy per epoch."""
    title = "Baseline training"
    epochs = [h for h in history if h.get("event", "epoch") == "epoch"]
    if not epochs:
        return empty_figure(title, "waiting for the first epoch")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = [int(h["epoch"]) for h in epochs]
    fig.add_trace(go.Scatter(x=x, y=[float(h["train_loss"]) for h in epochs], name="train loss",
                             mode="lines+markers", line=dict(color="#E45756")), secondary_y=False)
    fig.add_trace(go.Scatter(x=x, y=[float(h["val_accuracy"]) * 100 for h in epochs], name="val accuracy",
                             mode="lines+markers", line=dict(color="#5B4BDB")), secondary_y=True)
    fig.update_layout(**{**LAYOUT, "height": 320, "legend": dict(orientation="h", y=1.12)}, title=title)
    fig.update_xaxes(title_text="epoch", dtick=1, **AXIS_STYLE)
    fig.update_yaxes(**AXIS_STYLE)
    fig.update_yaxes(title_text="train loss (cross-entropy)", secondary_y=False)
    fig.update_yaxes(title_text="validation accuracy (%)", secondary_y=True)
    return fig


def fig_adaptive_training(events: Sequence[Mapping]) -> go.Figure:
    """Adaptive training per epoch: loss, validation accuracy, learning rate, remaining params and MACs.

    Epochs whose pruning step the validation guard rolled back are marked with an x.
    """
    title = "Adaptive training"
    epochs = [e for e in events if e.get("event", "epoch") == "epoch"]
    if not epochs:
        return empty_figure(title, "waiting for the first epoch")
    fig = make_subplots(rows=2, cols=2, horizontal_spacing=0.1, vertical_spacing=0.2,
                        subplot_titles=("train loss (cross-entropy)", "validation accuracy (%)",
                                        "learning rate (end of epoch)", "remaining vs start (%)"))
    x = [int(e["epoch"]) for e in epochs]
    line = dict(mode="lines+markers", showlegend=False)
    fig.add_trace(go.Scatter(x=x, y=[float(e["train_loss"]) for e in epochs], name="train loss",
                             line=dict(color="#E45756"), **line), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=[float(e["val_accuracy"]) * 100 for e in epochs], name="val accuracy",
                             line=dict(color="#5B4BDB"), **line), row=1, col=2)
    fig.add_trace(go.Scatter(x=x, y=[float(e["lr"]) for e in epochs], name="learning rate",
                             line=dict(color="#54A24B"), **line), row=2, col=1)
    fig.add_trace(go.Scatter(x=x, y=[(1 - float(e["params_removed_ratio"])) * 100 for e in epochs],
                             name="parameters", mode="lines+markers", line=dict(color="#4C78A8")), row=2, col=2)
    fig.add_trace(go.Scatter(x=x, y=[float(e["macs_ratio"]) * 100 for e in epochs], name="MACs (estimate)",
                             mode="lines+markers", line=dict(color="#F58518", dash="dot")), row=2, col=2)
    rolled = [e for e in epochs if e.get("rolled_back")]
    if rolled:
        fig.add_trace(go.Scatter(x=[int(e["epoch"]) for e in rolled],
                                 y=[float(e["val_accuracy"]) * 100 for e in rolled], name="pruning step rolled back",
                                 mode="markers", marker=dict(symbol="x", size=11, color="#1F1D2B")), row=1, col=2)
    fig.update_layout(**{**LAYOUT, "height": 520, "legend": dict(orientation="h", y=-0.12)}, title=title)
    fig.update_xaxes(title_text="epoch", dtick=1, **AXIS_STYLE)
    fig.update_yaxes(**AXIS_STYLE)
    fig.update_yaxes(type="log", row=2, col=1)
    return fig


def fig_report_front(df: pd.DataFrame, chosen_id: int | None = None) -> go.Figure:
    """Accuracy vs latency with the front ringed and the chosen point marked with a star."""
    fig = fig_accuracy_vs_latency(df)
    fig.update_layout(title="Measured points: accuracy vs latency (front ringed, chosen point starred)")
    if chosen_id is not None and len(df):
        row = df[df["point_id"] == chosen_id]
        if len(row):
            r = row.iloc[0]
            fig.add_trace(go.Scatter(
                x=[float(r["latency_ms_p50"])], y=[float(r["accuracy"]) * 100], mode="markers+text",
                name="chosen point", text=[f"chosen #{int(r['point_id'])}"], textposition="top center",
                marker=dict(size=22, symbol="star", color="#FFD400", line=dict(color="#1F1D2B", width=1.5)),
                hoverinfo="skip"))
    return fig


def sweep_figures(df: pd.DataFrame) -> dict[str, go.Figure]:
    """Every sweep chart by a file-friendly name (used by the pages, the exports and the report)."""
    return {
        "accuracy_vs_latency": fig_accuracy_vs_latency(df),
        "accuracy_vs_size": fig_accuracy_vs_size(df),
        "latency_size_vs_ratio": fig_metric_vs_ratio(df),
        "sparse_vs_dense": fig_sparse_vs_dense(df),
    }


# -- images ------------------------------------------------------------------------------------
def chromium_path() -> str | None:
    import os
    import shutil

    env = os.environ.get("BROWSER_PATH")
    if env and os.path.exists(env):
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def png_unavailable_reason() -> str | None:
    """None when PNG export can work here, else a sentence saying what is missing."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return "PNG export needs the kaleido package (pip install kaleido); the HTML charts still work."
    if chromium_path() is None:
        return ("PNG export needs a Chromium browser for kaleido (e.g. apt-get install chromium); "
                "the HTML charts still work.")
    return None


_PNG_SERVER = {"started": False}


def start_png_server() -> bool:
    """Start kaleido's persistent Chromium once per process (then ~0.2 s per image)."""
    if png_unavailable_reason() is not None:
        return False
    if _PNG_SERVER["started"]:
        return True
    import kaleido

    try:
        kaleido.start_sync_server(n=1, mathjax=False, timeout=60, silence_warnings=True)
    except Exception:  # already running, or cannot start: images then start a browser each
        pass
    _PNG_SERVER["started"] = True
    return True


def figure_png(fig: go.Figure, width: int = 1100, height: int = 500, scale: int = 2) -> bytes:
    """PNG bytes of ``fig`` via kaleido (raises RuntimeError with the reason when it cannot)."""
    import warnings

    reason = png_unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    start_png_server()
    with warnings.catch_warnings():  # plotly warns that options are ignored when a server runs
        warnings.simplefilter("ignore", UserWarning)
        return fig.to_image(format="png", width=width, height=height, scale=scale)


def figure_html(fig: go.Figure, include_plotlyjs=True) -> str:
    """A standalone HTML page of one interactive chart (plotly.js inlined: works offline)."""
    return fig.to_html(full_html=True, include_plotlyjs=include_plotlyjs)
