"""Training curves: the baseline's loss / accuracy per epoch, and adaptive training's five figures."""
from __future__ import annotations

from typing import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gemini_core.charts.style import AXIS_STYLE, LAYOUT, empty_figure


def percent_range(values) -> list[float]:
    """An axis range for percentages that stops at 100 (padding above a 99.7% accuracy drew a 102% tick)."""
    vals = [float(v) for v in values]
    pad = max(1.0, (max(vals) - min(vals)) * 0.08)
    return [max(0.0, min(vals) - pad), min(100.0, max(vals) + pad)]


def fig_training(history: Sequence[Mapping]) -> go.Figure:
    """Baseline training: mean train loss and validation accuracy per epoch; the kept epoch starred."""
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
    chosen = next((h for h in reversed(list(history)) if h.get("event") == "chosen"), None)
    if chosen is not None and chosen.get("epoch"):
        # The epoch whose weights were kept (best validation accuracy), and why training stopped.
        fig.add_trace(go.Scatter(x=[int(chosen["epoch"])], y=[float(chosen["val_accuracy"]) * 100],
                                 name=f"kept: epoch {int(chosen['epoch'])}", mode="markers",
                                 marker=dict(symbol="star", size=16, color="#FFD400",
                                             line=dict(color="#1F1D2B", width=1))), secondary_y=True)
        title = (f"Baseline training: kept epoch {int(chosen['epoch'])} of {int(chosen['epochs_run'])} "
                 f"({chosen['stopped']})")
    fig.update_layout(**{**LAYOUT, "height": 360, "legend": dict(LAYOUT["legend"], title_text="")}, title=title)
    fig.update_xaxes(title_text="epoch", dtick=1, **AXIS_STYLE)
    fig.update_yaxes(**AXIS_STYLE)
    fig.update_yaxes(title_text="train loss (cross-entropy)", secondary_y=False)
    fig.update_yaxes(title_text="validation accuracy (%)", secondary_y=True, tickmode="auto", showgrid=False,
                     range=percent_range([float(h["val_accuracy"]) * 100 for h in epochs]))
    fig.update_traces(cliponaxis=False)  # a point at 100% sits on the axis's end, not cut in half
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
    fig.update_layout(**{**LAYOUT, "height": 560, "legend": dict(LAYOUT["legend"], title_text="")}, title=title)
    fig.update_xaxes(title_text="epoch", dtick=1, **AXIS_STYLE)
    fig.update_yaxes(**AXIS_STYLE)
    fig.update_yaxes(type="log", row=2, col=1)
    fig.update_yaxes(range=percent_range([float(e["val_accuracy"]) * 100 for e in epochs]), row=1, col=2)
    fig.update_traces(cliponaxis=False)
    return fig
