"""The points of a sweep, live or stored: the explorer, its charts, the points table and the point picker."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from gemini_core.charts.sweep import fig_quality_vs_latency, fig_quality_vs_size, sweep_figures
from gemini_core.errors import GeminiError
from gemini_core.results.metrics import QualityMetric, metric_of
from gemini_core.results.store import Store
from gemini_core.results.table import (
    QUALITY_SHOWN,
    ok_points,
    points_frame,
    shippable_points,
    table_columns,
    table_frame,
)

from . import explore
from .state import (
    current_job,
    current_model,
    job_of_model,
    model_runs,
    select_point,
    selected_point_id,
    show_error_once,
)
from .views import POLL_SECONDS, job_status

REBUILD_SECONDS = 1.5  # while a job runs, figures are rebuilt at most this often (they cost CPU + GIL)
_FIGURES: dict = {}  # (job id, where) -> (points, built at, DataFrame, figures)


def _live_figures(job_id: str, where: str, records: list, running: bool):
    """The points table and the figures that do not depend on the explorer's choices, rebuilt only when new
    points arrived (and not more than every 1.5 s).

    Building plotly figures is pure Python; redoing it every poll would take the GIL from the
    sweep thread that is measuring latencies in the same process.
    """
    import time

    key = (job_id, where)
    cached = _FIGURES.get(key)
    now = time.time()
    if cached is not None:
        n, built, df, figs = cached
        if n == len(records) or (running and now - built < REBUILD_SECONDS):
            return df, figs
    df = points_frame(records)
    metric = metric_of(df)
    # The quality vs latency and size charts are drawn with the explorer's choices (colour, zoom, star).
    drawn_apart = (f"{metric.name}_vs_latency", f"{metric.name}_vs_size")
    figs = {} if where == "home" else {k: v for k, v in sweep_figures(df).items() if k not in drawn_apart}
    if len(_FIGURES) > 16:
        _FIGURES.clear()
    _FIGURES[key] = (len(records), now, df, figs)
    return df, figs


# -- live view ---------------------------------------------------------------------------------------
def _plot(fig, key: str, selectable: bool):
    if selectable:
        # A chart's selection is widget state: the browser sends it again with every later rerun (the picker's
        # too), so the script cannot tell an old click from a new one by its content (comparing with the last
        # pick ignored a second click on the same point after a picker choice). So a click is read in on_select,
        # which Streamlit calls only when the selection changed, and the chart then gets a fresh key: it comes
        # back without a selection, nothing old is sent again, and the next click on any point is a change.
        chart_key = _chart_key(key)
        st.plotly_chart(fig, key=chart_key, on_select=_chart_clicked(key, chart_key), selection_mode=("points",),
                        config={"displaylogo": False})
        return
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def _chart_key(key: str) -> str:
    return f"{key}_{st.session_state.get(f'_{key}_clicks', 0)}"


def _chart_clicked(key: str, chart_key: str):
    """The on_select callback of chart ``chart_key``: its clicked point becomes the chosen point."""

    def on_select() -> None:
        if chart_key != _chart_key(key):
            return  # a chart already replaced (Streamlit keeps a widget's callback after the widget is gone)
        try:
            points = st.session_state[chart_key].selection.points
        except (KeyError, AttributeError):
            points = []
        picked = [p["customdata"][0] for p in points if p.get("customdata")]
        if picked:  # an emptied selection (a double click) leaves the choice as it was
            select_point(picked[-1], source="chart")
            st.session_state[f"_{key}_clicks"] = st.session_state.get(f"_{key}_clicks", 0) + 1

    return on_select


def _model_sweep():
    """This session's sweep job when it works on the current model (a sweep of another model is not its
    story: its points stay with that model and in History); (job, other) where ``other`` is that other job."""
    job = current_job("sweep")
    if job is not None and not job_of_model(job):
        return None, job
    return job, None


def sweep_live_view(where: str) -> None:
    """The current model's sweep job, redrawn every second while it runs (``where``: "home" or "sweep"); with
    none, the current model's newest stored run."""
    job, _ = _model_sweep()
    running = job is not None and job.running

    @st.fragment(run_every=POLL_SECONDS if running else None)
    def live(polling: bool) -> None:
        job, other = _model_sweep()
        if other is not None:
            state = "is running" if other.running else "ran last"
            st.caption(f"A sweep of another model ({other.scenario_name}) {state}; its points are shown when "
                       "that model is the current one, and in History.")
        if job is None:
            _latest_stored_run(where)
            return
        snap = job.snapshot()
        job_status(snap)
        records, hosts = _host_filter(snap["records"], where)
        df, figs = _live_figures(f"{job.id}:{hosts}", where, records, snap["state"] == "running")
        _render_points(df, figs, where)
        if polling and job.done:
            st.rerun()  # a full rerun: buttons re-enabled, polling stops

    live(running)


def _latest_stored_run(where: str) -> None:
    """No sweep of the current model in this server process yet: show its newest stored run (finished points
    stay saved). Runs of other models are not shown here: History has them."""

    model = current_model()
    try:
        store = Store()
        every = [r for r in store.runs() if r["points_ok"]]
        runs = model_runs(every, model)
        records = store.points(runs[0]["run_id"]) if runs else []
    except GeminiError as exc:
        show_error_once(str(exc), "The run history cannot be read: ")
        return
    if not runs:
        others = f" History holds {len(every)} run(s) of other models." if every else ""
        st.info(f"No sweep of **{model['scenario']}** yet: press **Run demo sweep** to measure the demo grid on "
                f"the current model.{others}")
        return
    run = runs[0]
    st.caption(f"Latest stored run of this model: **{run['name']}** ({run['scenario']}, {run['points_ok']} points, "
               f"{run['status']}). Press **Run demo sweep** or start a sweep to measure again; History has every run.")
    records, hosts = _host_filter(records, where)
    df, figs = _live_figures(f"{store.path}:{run['run_id']}:{hosts}", where, records, running=False)
    _render_points(df, figs, where)


def stored_run_view(store, run: dict) -> None:
    """A past run, opened from History: the same explorer, charts and table as a live sweep."""
    records = store.points(run["run_id"])
    st.caption(f"**{run['name']}** · {run['scenario']} · {run['points_ok']} points"
               + (f", {run['points_failed']} failed" if run.get("points_failed") else "") + f" · {run['status']}")
    records, hosts = _host_filter(records, "history")
    df, figs = _live_figures(f"{store.path}:{run['run_id']}:{hosts}", "history", records, running=False)
    _render_points(df, figs, "history")


def _host_filter(records: list, where: str) -> tuple[list, str]:
    """Points measured on several hosts (a Ray sweep): latencies compare only within a host, so offer a filter."""
    hosts = sorted({str(r.get("host")) for r in records if r.get("host")})
    if where == "home" or len(hosts) < 2:
        return records, ""
    chosen = st.multiselect("Hosts", hosts, default=hosts, key=f"{where}_hosts",
                            help="points were measured on several machines; latency and memory compare only "
                                 "within one machine")
    st.caption(f"Points from {len(hosts)} hosts: hover a point to see its host and device.")
    return [r for r in records if str(r.get("host")) in chosen or not r.get("host")], ",".join(chosen)


# Streamlit keys of the charts drawn below the explorer (others: "<where>_<figure name>").
CHART_KEYS = {"latency_size_vs_ratio": "vs_ratio", "sparse_vs_dense": "sparse_dense"}


def _render_points(df: pd.DataFrame, figs: dict, where: str) -> None:
    """The explorer: constraint panel and recommendation, the two quality charts (coloured as chosen,
    each with its own front, the recommendation starred), the selected point's full record under them,
    a side-by-side comparison and parallel coordinates; on the Sweep page also the other charts, the table
    and the point picker."""
    st.session_state[f"live_points_{where}"] = len(df)
    metric = metric_of(df)
    rec = explore.ship_panel(df, where)
    recommended = rec.point_id if rec is not None else None
    options = {"color_by": explore.choices()["color"], "highlight_id": recommended,
               "y_range": explore.quality_zoom(df, where)}
    # The two charts share the width; the record goes under them (a third column left each chart ~350 px at
    # 1280 px, too small to read from the back of a room).
    c1, c2 = st.columns(2)
    with c1:
        _plot(fig_quality_vs_latency(df, **options), f"{where}_acc_lat", selectable=True)
    with c2:
        _plot(fig_quality_vs_size(df, **options), f"{where}_acc_size", selectable=True)
    if len(ok_points(df)):
        better = f"has a better {metric.label} ({'higher' if metric.higher_is_better else 'lower'} is better)"
        st.caption(f"The ring marks each chart's own front: no other point both {better} and lies further left on "
                   "that chart. Hover a point for a short card; click it for its full record.")
    explore.record_panel(df, selected_point_id())
    explore.compare_view(df, where, recommended)
    explore.parallel_view(df, where)
    if where == "home":
        return
    for name in sorted(figs, key=lambda n: n != "latency_size_vs_ratio"):  # the ratio chart first, as before
        _plot(figs[name], f"{where}_{CHART_KEYS.get(name, name)}", selectable=False)
    points_table(df, key=f"{where}_table")
    point_picker(df, key=f"{where}_pick", label="Point to export and report on", recommended=recommended)


# -- tables and pickers ------------------------------------------------------------------------------
def compact_columns(metric: QualityMetric) -> tuple[str, ...]:
    """The table's main figures (the rest behind the "every column" switch)."""
    return ("point_id", "label", "pareto", QUALITY_SHOWN, metric.change_column, "latency_ms_p50", "speedup",
            "size_kb", "compression", "execution")


def _speedup_style(value):
    try:
        return "color: #C0392B; font-weight: 600" if float(value) < 1.0 else ""
    except (TypeError, ValueError):
        return ""


def points_table(df: pd.DataFrame, key: str) -> None:
    """The sortable table of points; speed-ups below 1.0x (slower than dense fp32) shown in red."""
    if df.empty:
        return
    metric = metric_of(df)
    headings = table_columns(df)
    table = table_frame(df)
    # "front" as a mark, not a checkbox that looks editable
    table[headings["pareto"]] = ["★" if bool(v) else "" for v in table[headings["pareto"]]]
    if not st.toggle("every column", key=f"{key}_all_columns",
                     help="the table shows the main figures; switch on for p90, ideal size, params, MACs, memory, …"):
        table = table[[headings[c] for c in compact_columns(metric) if headings[c] in table.columns]]
    slower = int((df["speedup"] < 1.0).sum()) if "speedup" in df else 0
    st.markdown(f"**All points** ({len(df)}) · click a column to sort"
                + (f" · {slower} point(s) are slower than the dense fp32 reference (speed-up below 1.0x, in red)"
                   if slower else ""))
    col = headings["speedup"]
    formats = {col: "{:.2f}x", headings["compression"]: "{:.2f}x", headings[QUALITY_SHOWN]: metric.fmt,
               headings[metric.change_column]: "{:+.2f}", headings["latency_ms_p50"]: "{:.3f}",
               headings["latency_ms_p90"]: "{:.3f}", headings["size_kb"]: "{:.1f}", headings["ideal_size_kb"]: "{:.1f}"}
    styled = table.style.map(_speedup_style, subset=[col] if col in table.columns else []).format(
        {k: v for k, v in formats.items() if k in table.columns}, na_rep="–")
    st.dataframe(styled, key=key, hide_index=True, height=min(420, 38 + 35 * len(table)), width="stretch",
                 column_config={headings["pareto"]: st.column_config.TextColumn(
                     width="small", help=f"★ on the {metric.label}/latency/size front")})


def point_label(row, metric: QualityMetric | None = None) -> str:
    """'★ #3 · l1 0.25 · 8-bit · 96.5%': front mark, id, configuration, quality."""
    metric = metric or metric_of([row])
    star = "★ " if bool(row.get("pareto")) else ""
    return f"{star}#{int(row['point_id'])} · {row.get('label')} · {metric.format(row.get(metric.column), brief=True)}"


def point_picker(df: pd.DataFrame, key: str, label: str, recommended: int | None = None) -> int | None:
    """A selectbox of measured points (front first, the ship panel's ``recommended`` one marked); the choice
    goes to Export and Report, so library peers are not offered."""
    pts = shippable_points(df)
    if pts.empty:
        return None
    metric = metric_of(df)
    pts = pts.assign(_good=pts[metric.column].map(metric.goodness)).sort_values(["pareto", "_good"],
                                                                               ascending=[False, False])
    labels = {int(r["point_id"]): point_label(r, metric) + (" · recommended" if r["point_id"] == recommended else "")
              for r in pts.to_dict("records")}
    chosen = selected_point_id()
    if chosen in labels:
        st.session_state[key] = chosen  # follow a pick made in a chart or on another page
    elif st.session_state.get(key) not in labels:
        st.session_state.pop(key, None)

    def on_change():
        select_point(st.session_state.get(key), source=key)

    pid = st.selectbox(label, list(labels), format_func=lambda p: labels[p], index=None, key=key,
                       placeholder="choose a point (or click one in a chart)", on_change=on_change)
    if pid is not None:
        c1, c2 = st.columns(2)
        # the point travels in the address: following the link chooses it (a chart click alone only inspects)
        c1.page_link("pages/4_Export.py", label=f"Export point #{pid} →", icon=":material/inventory_2:",
                     query_params={"point": pid})
        c2.page_link("pages/5_Report.py", label=f"Report on point #{pid} →", icon=":material/summarize:",
                     query_params={"point": pid})
    return pid
