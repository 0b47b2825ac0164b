"""Present: the current model's latest run in four answers for a room (what did we gain, what did it cost,
how sure are we, what do we ship), above the fold at 1280 x 800, with the chart and the HTML report that
opens with the same four answers (``gemini_core.report.story``)."""
import html
import os

import streamlit as st

from gemini_core.charts.sweep import fig_quality_vs_size, fig_report_front
from gemini_core.errors import GeminiError
from gemini_core.report.story import story
from gemini_core.report.summary import build_report_html
from gemini_core.results.store import Store
from gemini_core.results.suggest import alternatives
from gemini_core.results.table import points_frame
from ui import explore
from ui.state import current_job, current_model, device_summary, use_router

use_router()  # deep link to a fresh server: go through app.py's router (see ui/state.py)

model = current_model()
scenario = model["scenario"]
try:
    store = Store()
    runs = [r for r in store.runs() if r["points_ok"] and r["scenario"] == scenario]
except GeminiError as exc:
    st.error(f"The run history cannot be read: {exc}")
    st.stop()
job = current_job("sweep")
# This session's sweep of the current model when there is one (it may still be running), else its newest run.
run = next((r for r in runs if r["run_id"] == getattr(job, "run_id", None)), runs[0] if runs else None)
if run is None:
    st.markdown(f"### {html.escape(scenario)}: nothing measured yet")
    st.info("Press **Run demo sweep** on the Overview: this page then tells the run's story in four answers.")
    st.stop()

df = points_frame(store.points(run["run_id"]))
told = story(df, explore.constraints())  # the Overview's bounds, so both pages ship the same point
st.markdown(f"### {html.escape(scenario)}: what compression bought")
st.caption(f"Run *{run['name']}* · {run['points_ok']} measured points · {run['status']} · {run['run_id']}. "
           "The point to ship is the Overview's recommendation under its bounds.")

answers = list(told.answers)
for i, answer in enumerate(answers):
    if i % 2 == 0:  # rows of two, read left to right then down
        row = st.columns(2)
    with row[i % 2].container(border=True):
        st.markdown(f"<div class='gemini-q'>{html.escape(answer.question)}</div>"
                    f"<div class='gemini-a'>{html.escape(answer.answer)}</div>"
                    f"<div class='gemini-d'>{html.escape(answer.detail)}</div>", unsafe_allow_html=True)

if told.chosen is None or told.reference is None:
    st.stop()
pid = int(told.chosen["point_id"])
front = fig_report_front(df, pid)
st.plotly_chart(front, key="p_front", config={"displaylogo": False})
device = {k: v for k, v in device_summary().items() if k in ("device", "threads", "torch", "host", "cpu", "cores")}
device["load_avg_1m"] = round(os.getloadavg()[0], 2)
alts = alternatives(df, pid)
st.download_button(
    "Download the HTML report (the same four answers, the charts, every point)", type="primary",
    data=lambda: build_report_html(f"Compression report: {run['name']}", run, told.reference, told.chosen, df,
                                   {"front": front, "size": fig_quality_vs_size(df, highlight_id=pid)}, device,
                                   alternatives=alts, told=told),
    file_name=f"gemini-report-{run['run_id']}-point-{pid}.html", mime="text/html", key="p_html", on_click="ignore")
