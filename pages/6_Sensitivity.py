"""Sensitivity: which layers can be compressed, and how much; then an allocation that meets a budget."""
import streamlit as st

from gemini_core.kinds.registry import kind_for_scenario
from ui import sensitivity_view as view
from ui.kinds import for_scenario
from ui.state import current_job, current_model, model_label, show_job_error, use_router


def run_controls(params) -> None:
    """Run / Cancel for the analysis ``params`` (None: the form has a problem), then the live job."""
    job = current_job("sensitivity")
    running = job is not None and job.running
    b = st.columns([1, 1, 4])
    b[0].button("Run analysis", key="sn_start", type="primary", disabled=running or params is None,
                on_click=lambda: view.start_analysis(params))
    b[1].button("Cancel", key="sn_cancel", disabled=not running, on_click=view.cancel_analysis)
    show_job_error()
    view.live_analysis()


use_router()

DEFAULTS = {"sn_objective": "smallest-size", "sn_max_drop": 1.0, "sn_speedup": 2.0, "sn_alloc_bits": [],
            "sn_alloc_prune": True, "sn_alloc_ft": 0}
for k, v in DEFAULTS.items():
    st.session_state.setdefault(k, v)

st.title("Sensitivity")
model = current_model()
kind_ui = for_scenario(model["scenario"])
st.caption(f"Model: **{model_label(model)}**. {kind_ui.SENSITIVITY_INTRO}")
params, params_error = kind_ui.sensitivity_form()
if params_error:
    st.error(f"This analysis cannot run: {params_error}")
run_controls(params)
if not kind_for_scenario(model["scenario"]).allocates_from_profile:  # a profile to read, not to allocate from
    st.stop()

profile = st.session_state.get("sn_profile")
st.divider()
st.subheader("Allocate: per-layer settings for a budget")
if not profile or not (profile.get("quantization") or profile.get("pruning")):
    st.info("Run (or finish part of) an analysis first; the allocator works from its measurements.")
    st.stop()
c = st.columns(4)
c[0].radio("Objective", ["smallest-size", "speedup"], key="sn_objective",
           help="smallest size within the drop budget, or the target speed-up with the least predicted drop")
c[1].number_input("Max accuracy drop (points)", min_value=0.0, max_value=100.0, step=0.25, key="sn_max_drop")
c[2].number_input("Target speed-up (x)", min_value=1.05, max_value=50.0, step=0.25, key="sn_speedup",
                  disabled=st.session_state.sn_objective != "speedup")
c[3].number_input("Fine-tune steps (allocation and comparators)", min_value=0, max_value=5000, step=20,
                  key="sn_alloc_ft")
c = st.columns([2, 1, 1])
c[0].multiselect("Bit widths the allocator may choose (empty: 32 and all profiled)",
                 sorted({32, *profile["params"]["bits"]}, reverse=True), key="sn_alloc_bits")
c[1].checkbox("Allow pruning", key="sn_alloc_prune", disabled=not profile.get("pruning"))
c[2].button("Propose allocation", key="sn_propose", on_click=lambda: view.propose(profile))
view.allocation_editor(profile)
sweep_job = current_job("sweep")
if st.session_state.get("sn_alloc_spec") is not None and st.session_state.get("sn_alloc"):
    st.button("Measure allocation vs uniform", key="sn_measure", type="primary",
              disabled=sweep_job is not None and sweep_job.running, on_click=view.measure_allocation)
    if sweep_job is not None and str(sweep_job.title).startswith("allocation vs uniform"):
        snap = sweep_job.snapshot()  # only the allocation's own sweep, not an unrelated one
        st.caption(f"Sweep: {snap['title']} · {snap['message']}")
    st.page_link("pages/2_Sweep.py", label="See the measured points on the Sweep page →", icon=":material/show_chart:")
