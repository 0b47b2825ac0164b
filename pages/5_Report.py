"""Report: one screen for stakeholders: baseline vs the chosen point, the front, a downloadable HTML report."""
import html
import os

import streamlit as st

from gemini_core.charts.sweep import fig_quality_vs_size, fig_report_front
from gemini_core.errors import GeminiError
from gemini_core.report.peers import PEER_NOTE, PEER_TITLE, peer_table
from gemini_core.report.story import story
from gemini_core.report.summary import build_report_html, compare, comparison_rows, headline_sentence
from gemini_core.results.metrics import metric_of
from gemini_core.results.suggest import alternatives, recommend
from gemini_core.results.table import points_frame, reference_row, shippable_points
from gemini_core.results.units import duration_text, size_text
from ui import explore, points_view
from ui.state import (
    chosen_point_id,
    current_job,
    current_model,
    device_summary,
    job_of_model,
    model_label,
    model_runs,
    run_label,
    run_of_model,
    runs_with_points_or_stop,
    select_point,
    take_point_from_link,
    use_router,
)

use_router()  # deep link to a fresh server: go through app.py's router (see ui/state.py)

st.title("Report")
take_point_from_link(reset=("r_run", "r_point"))
store, runs = runs_with_points_or_stop("report")

model = current_model()
if st.session_state.get("r_model") != model_label(model):  # another model: its own run and recommendation
    st.session_state["r_model"] = model_label(model)
    for key in ("r_run", "r_point"):
        st.session_state.pop(key, None)
labels = {r["run_id"]: run_label(r, model) for r in runs}
chosen_pid = chosen_point_id()
if "r_run" not in st.session_state or st.session_state["r_run"] not in labels:
    default_run = None
    if chosen_pid is not None:
        try:
            default_run = store.get_point(chosen_pid)["run_id"]
        except GeminiError:
            pass
    job = current_job("sweep")
    default_run = default_run or (getattr(job, "run_id", None) if job is not None and job_of_model(job) else None)
    if default_run not in labels or not run_of_model(next(r for r in runs if r["run_id"] == default_run), model):
        mine = model_runs(runs, model) or runs  # another model's run only when this one has none
        default_run = max(mine, key=lambda r: (r["points_ok"] > 1, r["created_at"]))["run_id"]
    st.session_state["r_run"] = default_run
run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="r_run")
run = next(r for r in runs if r["run_id"] == run_id)
df = points_frame(store.points(run_id))
ref = reference_row(df)
if ref is None:
    st.error("This run has no measured dense fp32 reference point, so nothing can be compared with it.")
    st.stop()

metric = metric_of(df)  # the run's quality metric: its words, its unit, which way is better
pts = shippable_points(df)  # a library peer is shown below, never chosen
pts = pts.assign(_good=pts[metric.column].map(metric.goodness)).sort_values(["pareto", "_good"],
                                                                           ascending=[False, False])
bounds = explore.constraints()  # the Overview's bounds (they live in the address): one rule, the same bounds
rec = recommend(df, bounds)  # the one ship rule (the Overview's panel, Present and `points --recommend` use it)
plabels = {int(r["point_id"]): points_view.point_label(r, metric)
           + (" · recommended" if int(r["point_id"]) == rec.point_id else "") for r in pts.to_dict("records")}
if chosen_pid in plabels:
    st.session_state["r_point"] = chosen_pid
elif st.session_state.get("r_point") not in plabels:
    st.session_state["r_point"] = rec.point_id if rec.point_id in plabels else int(ref["point_id"])
    st.caption(f"No point chosen yet: suggested #{st.session_state['r_point']}. {rec.reason} Pick another below.")
st.caption(f"Recommended under the Overview's bounds ({rec.constraints.describe()}): "
           + (f"#{rec.point_id}, marked “· recommended” below." if rec.point_id is not None
              else "no point meets them."))
pid = st.selectbox("Chosen point", list(plabels), format_func=plabels.get, key="r_point",
                   on_change=lambda: select_point(st.session_state.get("r_point"), source="report"))
chosen = df[df["point_id"] == pid].iloc[0]
cmp = compare(ref, chosen)


def _span(text: str, tone: str) -> str:
    """``tone``: good (green), neutral (grey: unchanged or within noise) or bad (red)."""
    return f"<span class='{tone}'>{html.escape(text)}</span>"


st.markdown("<div class='gemini-headline'>"
            + ", ".join([_span(cmp["size_text"], cmp["size_tone"]), _span(cmp["speed_text"], cmp["speed_tone"]),
                         _span(cmp["quality_text"], cmp["quality_tone"])])
            + "</div>", unsafe_allow_html=True)
c = st.columns(3)
# short values (a long one is cut off in a metric); the figures behind each in its delta line
c[0].metric("Size", cmp["size_text"], f"{size_text(chosen['size_bytes'])} vs {size_text(ref['size_bytes'])}",
            delta_color="off", delta_arrow="off")
c[1].metric("Speed", cmp["speed_text"],
            f"{duration_text(chosen['latency_ms_p50'])} vs {duration_text(ref['latency_ms_p50'])} (p50)",
            delta_color="off", delta_arrow="off")
c[2].metric(metric.heading[:1].upper() + metric.heading[1:], cmp["quality_short"],
            f"{metric.format(chosen[metric.column])} vs {metric.format(ref[metric.column])}", delta_color="off",
            delta_arrow="off", help=cmp["quality_text"])
st.markdown(f"**{chosen['label']}** against the unpruned 32-bit dense baseline, both measured in run "
            f"*{run['name']}* on {chosen.get('device')} at batch {int(chosen.get('batch_size') or 0)}. "
            "MACs and ideal size are estimates; every other figure is measured.")
if cmp["slower"]:
    st.warning(f"The chosen point is slower than the dense baseline ({cmp['speed_ratio']:.2f}x speed-up).")

left, right = st.columns([3, 2])
front_fig = fig_report_front(df, pid)
left.plotly_chart(front_fig, key="r_front")
right.container(key="r_compare").table([{"figure": a, "baseline": b, "chosen": c_}
                                         for a, b, c_ in comparison_rows(ref, chosen)])

alts = alternatives(df, pid)
st.markdown(headline_sentence(ref, chosen, (run.get("baseline") or {}).get("test")))
if alts:
    st.caption("The report sets the chosen point beside: " + "; ".join(
        f"#{int(a['point_id'])} {a.get('label')} ({metric.format(a.get(metric.column))}, "
        f"{duration_text(a['latency_ms_p50'])})"
        for a in alts) + f" (the other point with the best {metric.label} and the fastest other point on the front).")
peers = peer_table(df, chosen)
if not peers.empty:  # the run's library peers next to the reference and the chosen point
    st.subheader(PEER_TITLE)
    st.caption(PEER_NOTE + " In the charts they are the dark crosses, \"library peer\".")
    st.table(peers.set_index(peers.columns[0]))  # every column shown, wrapped to the page's width
figures = {"front": front_fig, f"{metric.name}_vs_size": fig_quality_vs_size(df)}
device = {k: v for k, v in device_summary().items() if k in ("device", "threads", "torch", "host", "cpu", "cores")}
device["load_avg_1m"] = round(os.getloadavg()[0], 2)
st.download_button(
    "Download the HTML report", type="primary",
    data=lambda: build_report_html(f"Compression report: {run['name']}", run, ref, chosen, df, figures, device,
                                   alternatives=alts, told=story(df, bounds, chosen_id=pid)),
    file_name=f"gemini-report-{run_id}-point-{pid}.html", mime="text/html", key="r_html", on_click="ignore",
    help="one self-contained file for people who do not compress models: a headline with its uncertainty, the "
         "chosen point against two alternatives, how it was measured, charts, a glossary, all points (folded)")
