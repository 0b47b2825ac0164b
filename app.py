"""Gemini Compression Studio: `streamlit run app.py`.

This file is the router: shared chrome (CSS, logo, sidebar) and the navigation. The first page
(Overview) is defined here; the others are thin views in pages/. All computation goes through
gemini_core, in background jobs (ui/jobs.py) so nothing blocks the page.
"""
from __future__ import annotations

import streamlit as st

from ui import views
from ui.kinds import for_scenario
from ui.state import current_job, current_model, persist_state, show_job_error, show_state_problems

st.set_page_config(page_title="Gemini Compression Studio", page_icon="assets/icon.svg", layout="wide",
                   initial_sidebar_state="expanded")


def overview() -> None:
    from ui import points_view  # deferred: its charts load the engine; app.py's imports (every page's) stay light

    st.title("Gemini Compression Studio")
    model = current_model()
    st.markdown(
        "Compress a trained model by **pruning** and **quantization**, measure every variant on this "
        "machine (accuracy, latency, size, memory) and ship the one that fits. "
        f"The current model is **{model['scenario']}**; change it on the **Model** page.")
    job = current_job("sweep")
    running = job is not None and job.running
    kind_ui = for_scenario(model["scenario"])  # the demo of the current model's kind
    c1, c2, c3 = st.columns([1.3, 1, 3])
    c1.button("Run demo sweep", key="demo_start", type="primary", on_click=views.start_demo, disabled=running,
              help=kind_ui.demo_help())
    c2.button("Cancel", key="demo_cancel", on_click=views.cancel_sweep, disabled=not running)
    c3.caption(kind_ui.demo_caption(model))
    show_job_error()
    points_view.sweep_live_view("home")
    st.page_link("pages/2_Sweep.py", label="All sweep charts, the points table and your own grid →",
                 icon=":material/show_chart:")


views.page_chrome()
show_state_problems()
pages = [
    st.Page(overview, title="Overview", icon=":material/home:", default=True),
    st.Page("pages/0_Present.py", title="Present", icon=":material/slideshow:"),
    st.Page("pages/1_Model.py", title="Model", icon=":material/model_training:"),
    st.Page("pages/2_Sweep.py", title="Sweep", icon=":material/show_chart:"),
    st.Page("pages/3_History.py", title="History", icon=":material/history:"),
    st.Page("pages/4_Export.py", title="Export", icon=":material/inventory_2:"),
    st.Page("pages/5_Report.py", title="Report", icon=":material/summarize:"),
    st.Page("pages/6_Sensitivity.py", title="Sensitivity", icon=":material/tune:"),
]
try:
    st.navigation(pages).run()
finally:  # also when the page stops or reruns: its choices are kept in the home folder (ui/saved_state.py)
    persist_state()
