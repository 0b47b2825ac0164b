""""Which point should I ship?": the constraint panel, the chart options, the full record of the selected
point, the side-by-side comparison and the parallel-coordinates view (Overview and Sweep pages).

The choices live in ``st.session_state["ship"]`` (one dict that survives page switches) and in the
page's query parameters (so a reload or a copied link keeps them). The recommendation itself is
``gemini_core.results.suggest.recommend``: the CLI (``points RUN --recommend``) gives the same answer.
"""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from gemini_core.charts.style import ENCODINGS
from gemini_core.charts.sweep import fig_parallel
from gemini_core.errors import GeminiError
from gemini_core.results.pareto import finite
from gemini_core.results.suggest import Constraints, Recommendation, compare_points, recommend
from gemini_core.results.table import ok_points
from ui.runtime_view import runtime_details

RULES = {"loss": "at most this accuracy loss (points)", "min": "at least this accuracy (%)"}
DEFAULTS = {"rule": "loss", "acc": 1.0, "lat": None, "size": None, "color": "bits", "zoom": None}
QUERY = {"rule": "ship_rule", "acc": "ship_acc", "lat": "ship_lat", "size": "ship_size", "color": "color",
         "zoom": "acc_range"}


def _parse(key: str, text: str):
    if key in ("rule", "color"):
        allowed = RULES if key == "rule" else ENCODINGS
        return text if text in allowed else DEFAULTS[key]
    if key == "zoom":
        try:
            lo, hi = (float(v) for v in text.split("-"))
            return (lo, hi) if 0 <= lo < hi <= 100 else None
        except ValueError:
            return None
    try:
        value = float(text)
    except ValueError:
        return DEFAULTS[key]
    return value if math.isfinite(value) and value >= 0 else DEFAULTS[key]


def choices() -> dict:
    """The current choices: this session's, else the query parameters' (a reload), else the defaults."""
    if "ship" not in st.session_state:
        params = st.query_params
        st.session_state["ship"] = {k: (_parse(k, params[q]) if q in params else v)
                                    for (k, v), q in zip(DEFAULTS.items(), QUERY.values())}
    return st.session_state["ship"]


def _remember() -> None:
    """Write the choices into the address bar (only the ones that differ from the defaults)."""
    ship = choices()
    for key, q in QUERY.items():
        value = ship.get(key)
        if value == DEFAULTS[key] or value is None:
            if q in st.query_params:
                del st.query_params[q]
            continue
        st.query_params[q] = f"{value[0]:g}-{value[1]:g}" if key == "zoom" else (
            f"{value:g}" if isinstance(value, float) else str(value))


def _set(key: str, widget_key: str):
    def callback():
        choices()[key] = st.session_state.get(widget_key)
    return callback


def constraints() -> Constraints:
    ship = choices()
    acc = ship.get("acc")
    return Constraints(max_loss_pts=acc if ship["rule"] == "loss" else None,
                       min_accuracy_pct=acc if ship["rule"] == "min" else None,
                       max_latency_ms=ship.get("lat") or None, max_size_kb=ship.get("size") or None)


def ship_panel(df: pd.DataFrame, where: str) -> Recommendation | None:
    """The constraint panel and its answer; the recommendation (None with no points or bad bounds)."""
    ship = choices()
    st.markdown("#### Which point should I ship?")
    c = st.columns([1.6, 1, 1, 1, 1.2])
    for col, key, widget in ((c[0], "rule", "radio"), (c[1], "acc", "number"), (c[2], "lat", "number"),
                             (c[3], "size", "number"), (c[4], "color", "select")):
        wkey = f"{where}_ship_{key}"
        st.session_state[wkey] = ship.get(key)  # follow the shared choice (set on another page or by a reload)
        with col:
            if key == "rule":
                st.radio("Accuracy bound", list(RULES), format_func=RULES.get, key=wkey, on_change=_set(key, wkey))
            elif key == "acc":
                st.number_input("loss (points)" if ship["rule"] == "loss" else "accuracy (%)", min_value=0.0,
                                max_value=100.0, step=0.5, key=wkey, on_change=_set(key, wkey),
                                help="empty: no accuracy bound")
            elif key == "lat":
                st.number_input("max latency p50 (ms)", min_value=0.0, step=0.1, key=wkey, format="%g",
                                on_change=_set(key, wkey), placeholder="no bound",
                                help="per batch, as measured on this machine; empty: no bound")
            elif key == "size":
                st.number_input("max size (KB)", min_value=0.0, step=10.0, key=wkey, format="%g",
                                on_change=_set(key, wkey), placeholder="no bound", help="empty: no bound")
            else:
                st.selectbox("Colour the points by", list(ENCODINGS), format_func=ENCODINGS.get, key=wkey,
                             on_change=_set(key, wkey))
    _remember()
    if ok_points(df).empty:
        return None
    try:
        rec = recommend(df, constraints())
    except GeminiError as exc:
        st.error(f"These bounds cannot be used: {exc}")
        return None
    if rec.point is None:
        st.warning(rec.reason, icon=":material/block:")
    else:
        st.success(rec.reason, icon=":material/verified:")
        st.session_state[f"{where}_recommended_id"] = rec.point_id
        if rec.alternatives:
            others = "; ".join(f"#{int(a['point_id'])} {a.get('label')} ({_quality(a)}, "
                               f"{a['latency_ms_p50']:.3g} ms, {a['size_kb']:.1f} KB)" for a in rec.alternatives)
            st.caption(f"Alternatives that also meet the bounds: {others}. The gold star in the charts marks "
                       "the recommendation.")
    return rec


def _quality(row) -> str:
    """Perplexity for an LLM point (lower is better), accuracy otherwise."""
    if finite(row.get("perplexity")):
        return f"perplexity {float(row['perplexity']):.3f}"
    return f"{float(row['accuracy']) * 100:.2f}%" if finite(row.get("accuracy")) else "accuracy –"


def accuracy_zoom(df: pd.DataFrame, where: str) -> tuple[float, float] | None:
    """A slider for the accuracy axis; by default it starts 10 points below the reference (or the best point),
    so the good points do not pile up at the top of a 0-100% axis."""
    pts = ok_points(df)
    acc = pts["accuracy"][pts["accuracy"].map(finite)] * 100 if len(pts) else pd.Series(dtype=float)
    if acc.empty:
        return None
    ship = choices()
    auto = (max(0.0, math.floor(acc.max() - 10.0)), 100.0)
    wkey = f"{where}_acc_zoom"
    st.session_state[wkey] = tuple(ship["zoom"]) if ship.get("zoom") else auto
    lo, hi = st.slider("Accuracy range shown (%)", 0.0, 100.0, step=0.5, key=wkey, on_change=_set("zoom", wkey),
                       help="zoom the accuracy axis of both charts; points outside the range are hidden")
    _remember()
    hidden = int(((acc < lo) | (acc > hi)).sum())
    if hidden:
        st.caption(f"{hidden} point(s) fall outside {lo:g}-{hi:g}% and are hidden; widen the range to see them.")
    return lo, hi


# -- the selected point, compared points, many dimensions -------------------------------------------
RECORD_FIELDS = [
    ("label", "configuration", None), ("prune_method", "prune method", None), ("prune_ratio", "prune ratio", "{:.2f}"),
    ("finetune_steps", "fine-tune steps", "{:.0f}"), ("bits", "bits", "{:.0f}"), ("granularity", "granularity", None),
    ("execution", "execution", None), ("accuracy", "accuracy (%)", "pct"), ("macro_f1", "macro-F1", "{:.4f}"),
    ("accuracy_delta_pts", "Δ accuracy vs dense fp32 (points)", "{:+.2f}"),
    ("latency_ms_p50", "latency p50 (ms)", "{:.3f}"), ("latency_ms_p90", "latency p90 (ms)", "{:.3f}"),
    ("speedup", "speed-up vs dense fp32", "{:.2f}x"), ("size_kb", "size (KB)", "{:.1f}"),
    ("ideal_size_kb", "ideal size (KB, estimate)", "{:.1f}"), ("compression", "smaller vs dense fp32", "{:.2f}x"),
    ("params", "parameters", "{:,.0f}"), ("nonzero_params", "non-zero parameters", "{:,.0f}"),
    ("macs", "MACs (multiply-accumulates, estimate)", "{:,.0f}"), ("peak_memory_bytes", "peak memory (KB)", "kb"),
    ("batch_size", "batch size", "{:.0f}"), ("threads", "torch threads", "{:.0f}"), ("backend", "backend", None),
    ("device", "device", None), ("host", "host", None), ("pareto", "on the accuracy/latency/size front", "yesno"),
]


LLM_RECORD_FIELDS = [
    ("perplexity", "perplexity (lower is better)", "{:.4f}"), ("perplexity_increase_pct", "perplexity vs fp32 (%)",
                                                                "{:+.2f}"),
    ("context_len", "context length (tokens)", "{:.0f}"), ("stride", "stride (tokens)", "{:.0f}"),
    ("tokens_scored", "tokens scored", "{:.0f}"), ("prefill_ms_p50", "prefill p50 (ms)", "{:.1f}"),
    ("decode_tokens_per_s", "decode (tokens/s)", "{:.1f}"), ("ttft_ms", "time to first token (ms)", "{:.1f}"),
    ("weight_mb_read_per_token", "weights read per token (MB)", "{:.1f}"),
    ("bandwidth_limit_tokens_per_s", "copy-bandwidth limit (tokens/s; computed, and a read stream can beat it)",
     "{:.0f}"),
    ("fraction_of_bandwidth_limit", "of the copy-bandwidth limit (%)", "pct"),
    ("read_limit_tokens_per_s", "read-bandwidth limit (tokens/s; computed from the measured read stream)", "{:.0f}"),
    ("fraction_of_read_limit", "of the read-bandwidth limit (%)", "pct"),
    ("kv_cache_mb_at_end", "KV cache at the end (MB)", "{:.2f}"), ("quant_method", "quantization", None),
    ("group_size", "group size", None), ("recovery", "recovery", None), ("execution", "execution", None),
]


def _human(value, fmt) -> str:
    if fmt == "yesno":
        return "yes" if bool(value) else "no"
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if fmt is None:
        return str(value)
    if fmt == "pct":
        return f"{float(value) * 100:.2f}"
    if fmt == "kb":
        return f"{float(value) / 1024:.1f}"
    try:
        return fmt.format(float(value))
    except (TypeError, ValueError):
        return str(value)


def record_panel(df: pd.DataFrame, point_id: int | None) -> None:
    """Every figure of the selected point (the hover card only has five lines)."""
    rows = df[df["point_id"] == point_id] if point_id is not None and len(df) else df.iloc[:0]
    if rows.empty:
        st.caption("Click a point in a chart (or choose one below) to see its full record here.")
        return
    row = rows.iloc[0].to_dict()
    st.markdown(f"**Point #{int(row['point_id'])}: full record**")
    fields = (LLM_RECORD_FIELDS + RECORD_FIELDS) if finite(row.get("perplexity")) else RECORD_FIELDS
    st.dataframe(pd.DataFrame({"figure": [name for _, name, _ in fields],
                               "value": [_human(row.get(f), fmt) for f, _, fmt in fields]}),
                 hide_index=True, use_container_width=True, height=36 + 35 * len(fields) // 2)
    runtime_details(row, key=f"record_{int(row['point_id'])}")


def compare_view(df: pd.DataFrame, where: str, recommended: int | None) -> None:
    pts = ok_points(df)
    if len(pts) < 2:
        return
    ids = [int(p) for p in pts["point_id"]]
    labels = {int(r["point_id"]): f"#{int(r['point_id'])} · {r.get('label')}" for r in pts.to_dict("records")}
    key = f"{where}_compare"
    st.session_state[key] = [p for p in st.session_state.get(key, []) if p in labels]
    hint = f" (e.g. the recommended #{recommended})" if recommended else ""
    chosen = st.multiselect("Compare two to four points side by side", ids, format_func=labels.get, key=key,
                            max_selections=4, placeholder="choose points" + hint)
    if len(chosen) >= 2:
        st.dataframe(compare_points(df, chosen), use_container_width=True)


def parallel_view(df: pd.DataFrame, where: str) -> None:
    pts = ok_points(df)
    if pts.empty:
        return
    varying = sum(pts[f].nunique() > 1 for f in ("prune_method", "prune_ratio", "finetune_steps", "bits",
                                                  "granularity", "execution"))
    with st.expander(f"Parallel coordinates: all settings and figures at once ({varying} settings vary)",
                     expanded=varying >= 4):
        st.plotly_chart(fig_parallel(df), key=f"{where}_parallel", config={"displaylogo": False})
