"""Figures for the Sensitivity page and its saved chart: profile dicts / records in, ``go.Figure`` out.

No Streamlit here. Heatmaps colour the quality lost by compressing one layer (or block) alone, in the
profile's quality metric (``params["quality"]``; accuracy in points when a profile names none) on the
split it was measured on; bars show each layer's measured latency share and its outlier figure
(max|w| / std). Losses below zero (the layer did slightly better on these examples) are drawn as 0 and
shown as measured in the hover.
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gemini_core.charts.style import AXIS_STYLE, LAYOUT, LEGEND, bit_color, empty_figure
from gemini_core.kinds.registry import kind_info
from gemini_core.results.metrics import QualityMetric, get_metric, metric_of

DROP_SCALE = [[0.0, "#F7F7FB"], [0.1, "#FDE6C8"], [0.35, "#F9A65A"], [0.7, "#E4572E"], [1.0, "#7A0B0B"]]


def _short(name: str, keep: int = 42) -> str:
    """Layer names without the wrapper prefix, cut from the left so the distinctive end stays."""
    for prefix in ("hf.bert.", "hf.roberta.", "hf.electra.", "hf."):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name if len(name) <= keep else "…" + name[-(keep - 1):]


def profile_metric(profile: dict) -> QualityMetric:
    """The quality metric a sensitivity profile measured its losses in (``params["quality"]``; profiles that
    name none were measured in the default kind's metric)."""
    return get_metric((profile.get("params") or {}).get("quality") or kind_info(None).quality_metric)


def fig_heatmap(profile: dict, kind: str) -> go.Figure:
    """``kind`` 'pruning' (coupled groups x ratios) or 'quantization' (layers x bits): colour = the loss in the
    profile's quality metric (``drop_points``, in the metric's change unit)."""
    phase = kind  # which profile: pruning or quantization (not a model kind)
    entries = profile.get(phase) or []
    key = "ratio" if phase == "pruning" else "bits"
    params = profile.get("params") or {}
    metric = profile_metric(profile)
    loss = f"{metric.loss_name} ({metric.change_unit})"
    method = f" ({params['method'].upper()})" if params.get("method") else ""
    title = (f"Pruning one coupled group at a time: {loss}" if phase == "pruning"
             else f"Quantizing one {params.get('rows') or 'layer'} at a time{method}: {loss}")
    split = {"val": "validation"}.get(profile.get("split") or "val", profile.get("split"))
    if not entries:
        return empty_figure(title, "not measured yet")
    columns = list(params["ratios"] if phase == "pruning" else params["bits"])
    # One colour scale for both heatmaps (same meaning: the same metric's loss), so equal colours mean
    # equal losses.
    zmax = max([max(r["drop_points"], 0.0) for k in ("pruning", "quantization") for e in profile.get(k) or []
                for r in e["results"] if r.get("drop_points") is not None] + [1.0])
    rows, z, text = [], [], []
    for entry in entries:
        by = {r[key]: r for r in entry["results"]}
        name = entry["group"] if phase == "pruning" else entry["layer"]
        coupled = len(entry.get("members", [])) - 1 if phase == "pruning" else 0
        label = _short(name) + (f" (+{coupled})" if coupled > 0 else "")
        rows.append(label)
        z.append([max(by[c]["drop_points"], 0.0) if c in by else None for c in columns])
        text.append([f"{by[c]['drop_points']:.2f}" if c in by else "" for c in columns])
    # Category labels at exactly the chosen ratios / bit widths (plotly would otherwise read "25%" as a number
    # and put ticks at 20/40/60/80).
    x = [f"ratio {c:g}" if phase == "pruning" else f"{c}-bit" for c in columns]
    members = [", ".join(_short(m, 60) for m in e.get("members", [])) for e in entries] if phase == "pruning" else None
    custom = [[members[i] if members else entries[i].get("kind", "")] * len(columns) for i in range(len(entries))]
    fig = go.Figure(go.Heatmap(
        z=z, x=x, y=rows, text=text, texttemplate="%{text}", colorscale=DROP_SCALE, zmin=0, zmax=zmax,
        customdata=custom, colorbar=dict(title=f"{metric.loss_name}<br>({metric.change_unit}, {split})"),
        hovertemplate=(f"%{{y}} at %{{x}}<br>{metric.loss_name} %{{text}}{'' if metric.relative else ' '}"
                       f"{metric.change_unit} ({split})<br>"
                       + ("members: %{customdata}" if phase == "pruning" else "%{customdata}") + "<extra></extra>")))
    layout = dict(LAYOUT)
    # The x axis (ticks and title) is on top, so the chart title sits at the figure's top edge above it:
    # in the plot's top margin the two overlapped.
    layout.update(height=max(300, 26 * len(rows) + 170), margin=dict(l=10, r=10, t=120, b=40))
    fig.update_layout(**layout, title=dict(text=title, yref="container", y=1, yanchor="top", pad=dict(t=16)))
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(title_text="pruning ratio of the group" if phase == "pruning" else "bit width of the layer",
                     side="top", type="category", tickvals=x, ticktext=x)
    if phase == "pruning" and any(len(e.get("members", [])) > 1 for e in entries):
        fig.add_annotation(text="(+N): N more layers are pruned with the group (coupled channels)",
                           xref="paper", yref="paper", x=0, y=-0.02, yanchor="top", showarrow=False,
                           font=dict(size=10, color="#5E5A72"))
    return fig


def fig_layer_bars(profile: dict) -> go.Figure:
    """Per layer: measured share of latency (fp32) and the outlier figure max|w| / std."""
    title = "Per layer: latency share and weight outliers"
    quant = {e["layer"]: e for e in profile.get("quantization") or []}
    latency = {r["layer"]: r for r in (profile.get("latency") or {}).get("layers", [])}
    names = list(dict.fromkeys(list(quant) + list(latency)))
    if not names:
        return empty_figure(title, "not measured yet")
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("share of measured latency (%)", "max |w| / std (outlier figure)"))
    labels = [_short(n) for n in names]
    if latency:
        fig.add_trace(go.Bar(y=labels, x=[latency[n]["share"] * 100 if n in latency else None for n in names],
                             orientation="h", name="fp32 latency share", marker_color=bit_color(32),
                             hovertemplate="%{y}: %{x:.2f}% of the forward pass<extra></extra>"), row=1, col=1)
        int8 = [latency[n].get("int8_ms_p50") if n in latency else None for n in names]
        total = (profile.get("latency") or {}).get("total_ms_p50") or 0
        if any(v is not None for v in int8) and total:
            fig.add_trace(go.Bar(y=labels, x=[v / total * 100 if v is not None else None for v in int8],
                                 orientation="h", name="int8 kernel (share of fp32 pass)", marker_color=bit_color(8),
                                 hovertemplate="%{y}: %{x:.2f}% with the int8 kernel<extra></extra>"), row=1, col=1)
    if quant:
        fig.add_trace(go.Bar(y=labels, x=[quant[n]["max_abs_over_std"] if n in quant else None for n in names],
                             orientation="h", name="max |w| / std", marker_color="#B279A2",
                             customdata=[[quant[n]["outlier_fraction_6std"] * 100 if n in quant else None]
                                         for n in names],
                             hovertemplate="%{y}: max|w|/std %{x:.1f}, %{customdata[0]:.3f}% of weights beyond "
                                           "6 std<extra></extra>"), row=1, col=2)
    layout = dict(LAYOUT)
    layout.update(height=max(280, 22 * len(names) + 140), margin=dict(l=10, r=10, t=70, b=40), barmode="group",
                  legend=dict(LEGEND))
    fig.update_layout(**layout, title=title)
    fig.update_yaxes(autorange="reversed", automargin=True, row=1, col=1)
    fig.update_xaxes(**AXIS_STYLE)
    return fig


def best_uniform_near(records: list[dict], target_size: float) -> dict | None:
    """The best uniform (no per-layer overrides) ok point, in the records' quality metric, no bigger than
    ``target_size`` x 1.05, else the uniform point nearest in size."""
    uniform = [r for r in records
               if r.get("status", "ok") == "ok" and not (r.get("config") or {}).get("layer_overrides")]
    if not uniform:
        return None
    metric = metric_of(uniform)
    fitting = [r for r in uniform if r["size_bytes"] <= target_size * 1.05]
    if fitting:
        return max(fitting, key=lambda r: (metric.goodness(r.get(metric.column)), -r["size_bytes"]))
    return min(uniform, key=lambda r: abs(r["size_bytes"] - target_size))


def fig_allocation_vs_uniform(panels: dict[str, list[dict]],
                              title: str = "Per-layer allocation vs uniform points") -> go.Figure:
    """Quality vs size, one panel per scenario: uniform points by bit width, allocations as stars, and a
    line from each allocation to the best uniform point at equal (or nearest) size."""
    names = list(panels)
    fig = make_subplots(rows=1, cols=max(1, len(names)), subplot_titles=names or [""], horizontal_spacing=0.08)
    shown = set()
    for col, name in enumerate(names, start=1):
        records = [r for r in panels[name] if r.get("status", "ok") == "ok"]
        metric = metric_of(records)
        for r in records:
            cfg = r.get("config") or {}
            per_layer = bool(cfg.get("layer_overrides"))
            legend = r.get("legend") or ("per-layer allocation" if per_layer else f"uniform {cfg.get('bits')}-bit")
            by_hand = bool(r.get("legend"))
            fig.add_trace(go.Scatter(
                x=[r["size_bytes"] / 1024], y=[metric.shown(r.get(metric.column))], mode="markers", name=legend,
                legendgroup=legend, showlegend=legend not in shown,
                marker=dict(size=18 if per_layer else 11,
                            symbol=("diamond" if by_hand else "star") if per_layer else "circle",
                            color=("#B279A2" if by_hand else "#5B4BDB") if per_layer else bit_color(cfg.get("bits")),
                            line=dict(color="#1F1D2B" if per_layer else "white", width=1)),
                hovertemplate=f"{r['label']}<br>%{{y:.2f}}{metric.unit} at %{{x:.1f}} KB<extra></extra>"),
                row=1, col=col)
            shown.add(legend)
            if per_layer:
                best = best_uniform_near(records, r["size_bytes"])
                if best is not None:
                    fig.add_trace(go.Scatter(
                        x=[r["size_bytes"] / 1024, best["size_bytes"] / 1024],
                        y=[metric.shown(r.get(metric.column)), metric.shown(best.get(metric.column))], mode="lines",
                        line=dict(color="#5B4BDB", dash="dot", width=1), showlegend=False, hoverinfo="skip"),
                        row=1, col=col)
        fig.update_xaxes(title_text="checkpoint size (KB, log)", type="log", row=1, col=col, **AXIS_STYLE)
        fig.update_yaxes(title_text=metric.axis_title if col == 1 else None, type="log" if metric.log_axis else None,
                         row=1, col=col, **AXIS_STYLE)
    layout = dict(LAYOUT)
    layout.update(legend=dict(LEGEND, title_text="point"), width=None)
    fig.update_layout(**layout, title=title)
    return fig
