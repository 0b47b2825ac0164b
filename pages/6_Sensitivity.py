"""Sensitivity: which layers can be compressed, and how much; then an allocation that meets a budget."""
import streamlit as st

from gemini_core.config import BITS, GRANULARITIES, STRUCTURED_METHODS
from gemini_core.errors import GeminiError
from gemini_core.workflows.sensitivity import AnalysisParams
from ui import llm as llm_ui
from ui import sensitivity_view as view
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

RATIOS = [0.1, 0.25, 0.5, 0.75, 0.9]
PHASES = ["pruning", "quantization", "latency"]
DEFAULTS = {"sn_ratios": [0.25, 0.5, 0.75], "sn_bits": [8, 4, 2], "sn_gran": "per-channel",
            "sn_method": "l2-structured", "sn_phases": PHASES, "sn_examples": 512, "sn_objective": "smallest-size",
            "sn_max_drop": 1.0, "sn_speedup": 2.0, "sn_alloc_bits": [], "sn_alloc_prune": True, "sn_alloc_ft": 0}
for k, v in DEFAULTS.items():
    st.session_state.setdefault(k, v)

st.title("Sensitivity")
model = current_model()
if model["scenario"] == "llm":  # a causal LM: one decoder block quantized at a time, perplexity
    st.caption(f"Model: **{model_label(model)}**. Which decoder blocks to keep at higher precision: each block is "
               "quantized alone and the perplexity on the held-out text measured (lower is better).")
    llm_params, llm_error = llm_ui.sensitivity_form()
    if llm_error:
        st.error(f"This analysis cannot run: {llm_error}")
    run_controls(llm_params)
    st.stop()
st.caption(f"Model: **{model_label(model)}**. Each coupled group is pruned alone and each layer quantized alone, "
           "on the validation split (test stays held out), so you see which layers can be compressed and how much.")

c = st.columns(3)
c[0].multiselect("Pruning ratios (per coupled group)", RATIOS, key="sn_ratios")
c[1].multiselect("Bit widths (per layer)", [b for b in BITS if b != 32], key="sn_bits")
c[2].multiselect("Profiles", PHASES, key="sn_phases")
c = st.columns(3)
c[0].selectbox("Granularity", GRANULARITIES, key="sn_gran")
c[1].selectbox("Structured method", STRUCTURED_METHODS, key="sn_method")
c[2].number_input("Validation examples per evaluation", min_value=16, max_value=100_000, step=16, key="sn_examples")

params, params_error = None, None
try:
    if "pruning" in st.session_state.sn_phases and not st.session_state.sn_ratios:
        raise GeminiError("choose at least one pruning ratio for the pruning profile")
    params = AnalysisParams(ratios=tuple(st.session_state.sn_ratios), bits=tuple(st.session_state.sn_bits),
                            granularity=st.session_state.sn_gran, prune_method=st.session_state.sn_method,
                            max_examples=int(st.session_state.sn_examples), phases=tuple(st.session_state.sn_phases))
    if "quantization" in params.phases and not params.bits:
        raise GeminiError("choose at least one bit width for the quantization profile")
except GeminiError as exc:
    params, params_error = None, str(exc)
if params_error:
    st.error(f"This analysis cannot run: {params_error}")

run_controls(params)

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
