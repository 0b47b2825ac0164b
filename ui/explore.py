""""Which point should I ship?": the constraint panel, the chart options, the full record of the selected
point, the side-by-side comparison and the parallel-coordinates view (Overview and Sweep pages).

The choices live in ``st.session_state["ship"]`` (one dict that survives page switches) and in the
page's query parameters (so a reload or a copied link keeps them). The recommendation itself is
``gemini_core.results.suggest.recommend``: the CLI (``points RUN --recommend``) gives the same answer.
The quality bound is in the run's quality metric (``results.metrics``): its words, its unit, its
direction and, until the user types one, its default tolerance.
"""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from gemini_core.charts.style import ENCODINGS
from gemini_core.charts.sweep import fig_parallel
from gemini_core.errors import GeminiError
from gemini_core.kinds.registry import KindInfo
from gemini_core.results.metrics import QualityMetric, finite, get_metric, kind_of_rows
from gemini_core.results.suggest import Constraints, Recommendation, compare_points, recommend
from gemini_core.results.table import ok_points
from gemini_core.results.units import BYTES_PER_KB, duration_text, size_text
from ui.runtime_view import runtime_details

RULES = ("loss", "min")  # a bound on the loss against the reference, or on the value itself
# "acc" DEFAULT: untouched, the run's metric's default tolerance (1 accuracy point, 5% perplexity) shown in the
# loss box (the value box starts empty); None: emptied by the user, no quality bound. Every empty box is no bound.
DEFAULT = "default"
DEFAULTS = {"rule": "loss", "acc": DEFAULT, "lat": None, "size": None, "color": "bits", "zoom": None}
BOUNDS = ("rule", "acc", "lat", "size")  # what "Reset bounds" puts back
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
    if key == "acc" and text == "none":
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
        if value == DEFAULTS[key] or (value is None and key != "acc"):
            if q in st.query_params:
                del st.query_params[q]
            continue
        st.query_params[q] = "none" if value is None else f"{value[0]:g}-{value[1]:g}" if key == "zoom" else (
            f"{value:g}" if isinstance(value, float) else str(value))


BOUND_BOXES = ("acc", "lat", "size")  # typed numbers; empty is no bound
BOUND_NAMES = {"acc": "quality bound", "lat": "latency bound", "size": "size bound"}


def bound_text(value) -> str:
    """A bound as its box shows it: '0.5', '' for none."""
    return "" if value is None else f"{value:g}"


def parse_bound(text) -> float | None:
    """A typed bound: None when the box is empty; a ValueError for anything but a finite number >= 0."""
    text = str(text or "").strip().replace(",", ".")
    if not text:
        return None
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def _set(key: str, widget_key: str, echoes: tuple = ()):
    """The on_change of the box ``widget_key``. ``echoes``: values the page itself put in the box (an automatic
    range), which a late report from the browser must not turn into a choice."""

    def callback():
        # Streamlit's multipage apps can call a page's on_change without an interaction after the widget is gone
        # (its key removed): that call would empty a bound the person set. Only a live widget's change counts.
        if widget_key not in st.session_state:
            return
        ship = choices()
        value = st.session_state[widget_key]
        if key in BOUND_BOXES:
            try:
                value = parse_bound(value)
            except ValueError:
                st.session_state["_ship_error"] = (f"The {BOUND_NAMES[key]} {value!r} is not a number of 0 or more: "
                                                   "it stays as it was (empty the box for no bound).")
                return
        if value == ship.get(key) or (value in echoes and ship.get(key) == DEFAULTS.get(key)):
            return
        ship[key] = value
        if key == "rule":  # a loss in points is not a value in percent: the number starts again from the default
            ship["acc"] = DEFAULT
    return callback


def _reset_bounds() -> None:
    choices().update({k: DEFAULTS[k] for k in BOUNDS})


def rule_labels(metric: QualityMetric) -> dict[str, str]:
    """The two quality rules in the metric's words: 'at most this accuracy loss (points)',
    'at least this accuracy (%)' (at most, for a metric where lower is better)."""
    unit = f" ({metric.unit})" if metric.unit else ""
    return {"loss": f"at most this {metric.loss_name} ({metric.change_unit})",
            "min": f"at {'least' if metric.higher_is_better else 'most'} this {metric.label}{unit}"}


def constraints() -> Constraints:
    """The panel's bounds. The quality bound is in each run's own metric; left at its default it is that
    metric's default tolerance (so one panel serves runs of every kind)."""
    ship = choices()
    acc = ship.get("acc")
    typed = None if acc == DEFAULT else acc
    return Constraints(max_loss=typed if ship["rule"] == "loss" else None,
                       min_quality=typed if ship["rule"] == "min" else None,
                       default_loss=ship["rule"] == "loss" and acc == DEFAULT,
                       max_latency_ms=ship.get("lat"), max_size_kb=ship.get("size"), unbounded=True)


def _kind_metric(df: pd.DataFrame) -> tuple[KindInfo, QualityMetric]:
    kind = kind_of_rows(df)
    return kind, get_metric(kind.quality_metric)


def ship_panel(df: pd.DataFrame, where: str) -> Recommendation | None:
    """The constraint panel and its answer; the recommendation (None with no points or bad bounds)."""
    ship = choices()
    kind, metric = _kind_metric(df)
    if ship.get("acc_metric") not in (None, metric.name) and ship.get("acc") not in (DEFAULT, None):
        ship["acc"] = DEFAULT  # a number typed in another metric's unit means nothing here
    ship["acc_metric"] = metric.name
    labels = rule_labels(metric)
    st.markdown("#### Which point should I ship?")
    c = st.columns([1.6, 1, 1, 1, 1.2], vertical_alignment="bottom")  # boxes in line when a label wraps
    for col, key in ((c[0], "rule"), (c[1], "acc"), (c[2], "lat"), (c[3], "size"), (c[4], "color")):
        wkey = f"{where}_ship_{key}"
        value = ship.get(key)
        if key == "acc" and value == DEFAULT:  # what an untouched loss bound means for this run; no value bound
            value = metric.default_tolerance if ship["rule"] == "loss" else None
        # follow the shared choice (set on another page or by a reload); the bounds are typed text boxes: a focused
        # number box sends an empty value when the person moves to another page (Streamlit 1.5x), which emptied
        # the bound just set, while a text box sends nothing
        st.session_state[wkey] = bound_text(value) if key in BOUND_BOXES else value
        with col:
            if key == "rule":
                st.radio(f"{metric.label[:1].upper()}{metric.label[1:]} bound", list(RULES), format_func=labels.get,
                         key=wkey, on_change=_set(key, wkey))
            elif key == "acc":
                st.text_input(f"loss ({metric.change_unit})" if ship["rule"] == "loss"
                              else f"{metric.label}{f' ({metric.unit})' if metric.unit else ''}", key=wkey,
                              on_change=_set(key, wkey), placeholder="no bound",
                              help=f"a number; empty: no {metric.label} bound")
            elif key == "lat":
                st.text_input(f"max {kind.latency_heading.split(' p50')[0]} p50 (ms)", key=wkey,
                              on_change=_set(key, wkey), placeholder="no bound",
                              help="as measured on this machine, in milliseconds; empty: no bound")
            elif key == "size":
                st.text_input("max size (KB)", key=wkey, on_change=_set(key, wkey), placeholder="no bound",
                              help="in KB (1 KB = 1,024 bytes); empty: no bound")
            else:
                st.selectbox("Colour the points by", list(ENCODINGS), format_func=ENCODINGS.get, key=wkey,
                             on_change=_set(key, wkey))
    st.button("Reset bounds", key=f"{where}_ship_reset", on_click=_reset_bounds,
              help=f"back to the default: {metric.loss_name} at most "
                   f"{metric.change_text(metric.default_tolerance, 0)[1:]}, no latency or size bound")
    _remember()
    if st.session_state.get("_ship_error"):
        st.error(st.session_state.pop("_ship_error"))
    top = metric.display_range[1] if metric.display_range and ship["rule"] == "min" else None
    if top is not None and isinstance(ship.get("acc"), float) and ship["acc"] > top:
        st.error(f"A {metric.label} of {ship['acc']:g}{metric.unit} cannot be reached (at most {top:g}{metric.unit}).")
        return None
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
            others = "; ".join(f"#{int(a['point_id'])} {a.get('label')} ({_quality(a, metric)}, "
                               f"{duration_text(a['latency_ms_p50'])}, {size_text(a['size_kb'] * BYTES_PER_KB)})"
                               for a in rec.alternatives)
            st.caption(f"Alternatives that also meet the bounds: {others}. The gold star in the charts marks "
                       "the recommendation.")
    return rec


def _quality(row, metric: QualityMetric) -> str:
    """'accuracy 96.90%', 'perplexity 12.345'."""
    return f"{metric.label} {metric.format(row.get(metric.column))}"


def quality_zoom(df: pd.DataFrame, where: str) -> tuple[float, float] | None:
    """A slider for the quality axis of a metric with bounded values (accuracy, 0-100%); None for one
    without (perplexity, drawn on a log axis). By default the range starts 10 default tolerances (10
    accuracy points) beyond the best point, so the good points do not pile up at the edge of the axis."""
    _, metric = _kind_metric(df)
    if metric.display_range is None:
        return None
    pts = ok_points(df)
    shown = pts[metric.column][pts[metric.column].map(finite)] * metric.scale if len(pts) else pd.Series(dtype=float)
    if shown.empty:
        return None
    ship = choices()
    low, high = metric.display_range
    margin = 10.0 * metric.default_tolerance
    auto = ((max(low, math.floor(shown.max() - margin)), high) if metric.higher_is_better
            else (low, min(high, math.ceil(shown.min() + margin))))
    wkey = f"{where}_acc_zoom"
    st.session_state[wkey] = tuple(ship["zoom"]) if ship.get("zoom") else auto
    # while points arrive the automatic range moves, and the browser reports the one it showed a moment ago:
    # those reports are the page's own ranges, not a zoom the person chose
    autos = st.session_state.setdefault(f"_{wkey}_autos", [])
    if auto not in autos:
        autos.append(auto)
    name = f"{metric.label[:1].upper()}{metric.label[1:]}"
    lo, hi = st.slider(f"{name} range shown ({metric.unit})", low, high, step=0.5, key=wkey,
                       on_change=_set("zoom", wkey, echoes=tuple(autos)),
                       help=f"zoom the {metric.label} axis of both charts; points outside the range are hidden")
    _remember()
    hidden = int(((shown < lo) | (shown > hi)).sum())
    if hidden:
        st.caption(f"{hidden} point(s) fall outside {lo:g}-{hi:g}{metric.unit} and are hidden; widen the range to "
                   "see them.")
    return lo, hi


# -- the selected point, compared points, many dimensions -------------------------------------------
# (field, name, format) of the full record; the quality rows, the latency headings, the metric's protocol and
# the kind's own figures are set in between by ``record_fields``.
CONFIG_RECORD_FIELDS = [
    ("label", "configuration", None), ("prune_method", "prune method", None), ("prune_ratio", "prune ratio", "{:.2f}"),
    ("finetune_steps", "fine-tune steps", "{:.0f}"), ("bits", "bits", "{:.0f}"), ("granularity", "granularity", None),
    ("execution", "execution", None)]
COST_RECORD_FIELDS = [
    ("speedup", "speed-up vs dense fp32", "{:.2f}x"), ("size_kb", "size (KB)", "{:.1f}"),
    ("ideal_size_kb", "ideal size (KB, estimate)", "{:.1f}"), ("compression", "smaller vs dense fp32", "{:.2f}x"),
    ("params", "parameters", "{:,.0f}"), ("nonzero_params", "non-zero parameters", "{:,.0f}"),
    ("macs", "MACs (multiply-accumulates, estimate)", "{:,.0f}"), ("peak_memory_bytes", "peak memory (KB)", "kb"),
    ("batch_size", "batch size", "{:.0f}"), ("threads", "torch threads", "{:.0f}"), ("backend", "backend", None),
    ("device", "device", None), ("host", "host", None)]
# Figures some points carry (a second quality figure, a runtime's decode limits, a quantizer's settings): shown
# when the point has them, whatever its kind.
OPTIONAL_RECORD_FIELDS = [
    ("macro_f1", "macro-F1", "{:.4f}"), ("ttft_ms", "time to first token (ms)", "{:.1f}"),
    ("weight_mb_read_per_token", "weights read per token (MB)", "{:.1f}"),
    ("bandwidth_limit_tokens_per_s", "copy-bandwidth limit (tokens/s; computed, and a read stream can beat it)",
     "{:.0f}"),
    ("fraction_of_bandwidth_limit", "of the copy-bandwidth limit (%)", "pct"),
    ("read_limit_tokens_per_s", "read-bandwidth limit (tokens/s; computed from the measured read stream)", "{:.0f}"),
    ("fraction_of_read_limit", "of the read-bandwidth limit (%)", "pct"),
    ("kv_cache_mb_at_end", "KV cache at the end (MB)", "{:.2f}"), ("quant_method", "quantization", None),
    ("group_size", "group size", None), ("recovery", "recovery", None)]


def record_fields(row, kind: KindInfo, metric: QualityMetric) -> list[tuple]:
    """The full record's rows for one point of ``kind``, in ``metric``."""
    latency = kind.latency_heading
    quality = [(metric.column, metric.heading, lambda v: metric.fmt.format(metric.shown(v))),
               (metric.change_column, f"Δ {metric.label} vs dense fp32 ({metric.change_unit})", "{:+.2f}"),
               *((f, name, "{:.0f}") for f, name in metric.protocol)]
    own = [(c.name, c.heading, lambda v, c=c: c.fmt.format(float(v) * c.scale)) for c in kind.extra_columns]
    optional = [f for f in OPTIONAL_RECORD_FIELDS if not _missing(row.get(f[0]))]
    return [*CONFIG_RECORD_FIELDS, *quality, *optional,
            ("latency_ms_p50", latency, "{:.3f}"), ("latency_ms_p90", latency.replace("p50", "p90"), "{:.3f}"),
            *own, *COST_RECORD_FIELDS, ("pareto", f"on the {metric.label}/latency/size front", "yesno")]


def _missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and not math.isfinite(value))


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
        return fmt(value) if callable(fmt) else fmt.format(float(value))
    except (TypeError, ValueError):
        return str(value)


def record_panel(df: pd.DataFrame, point_id: int | None) -> None:
    """Every figure of the selected point (the hover card only has five lines)."""
    rows = df[df["point_id"] == point_id] if point_id is not None and len(df) else df.iloc[:0]
    if rows.empty:
        st.caption("Click a point in a chart (or choose one below) to see its full record here, under the charts.")
        return
    row = rows.iloc[0].to_dict()
    st.markdown(f"**Point #{int(row['point_id'])}: full record**")
    kind, metric = _kind_metric(df)
    fields = record_fields(row, kind, metric)
    # Static tables as tall as their rows, wrapping long names (a scrolling grid here was half as tall as its
    # rows and cut names), in two halves side by side so the record stays about a screen high.
    table = pd.DataFrame({"figure": [name for _, name, _ in fields],
                          "value": [_human(row.get(f), fmt) for f, _, fmt in fields]})
    half = (len(table) + 1) // 2
    for col, part in zip(st.columns(2), (table.iloc[:half], table.iloc[half:])):
        col.table(part, hide_index=True, hide_header=True, border="horizontal")
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
                            max_selections=4, placeholder="choose points" + hint,
                            help="at most four points at a time: the table keeps one readable column per point")
    if len(chosen) == 4 and len(ids) > 4:  # "Select all" stops at four: say which four, not silently
        st.caption(f"The comparison takes at most four points: {', '.join(f'#{p}' for p in chosen)} are shown; "
                   "remove one to add another.")
    if len(chosen) >= 2:
        st.dataframe(compare_points(df, chosen), width="stretch")


def parallel_view(df: pd.DataFrame, where: str) -> None:
    pts = ok_points(df)
    if pts.empty:
        return
    varying = sum(pts[f].nunique() > 1 for f in ("prune_method", "prune_ratio", "finetune_steps", "bits",
                                                  "granularity", "execution"))
    with st.expander(f"Parallel coordinates: all settings and figures at once ({varying} settings vary)",
                     expanded=varying >= 4):
        st.plotly_chart(fig_parallel(df), key=f"{where}_parallel", config={"displaylogo": False})
