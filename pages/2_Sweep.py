"""Sweep: choose a grid, see its size and a time estimate, run it in the background, watch it fill in."""
import streamlit as st

from gemini_core.config import BITS, EXECUTIONS, GRANULARITIES, MAX_PRUNE_RATIO, PRUNE_METHODS
from gemini_core.errors import GeminiError
from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.workflows.ray_executor import RAY_MISSING, cluster_summary, ray_available
from ui import llm as llm_ui
from ui import points_view, recipes, views
from ui.estimates import estimate_range, format_range
from ui.state import current_job, current_model, model_label, shared_memory, show_job_error, use_router
from ui.sweep_plan import DEMO_GRID

use_router()  # deep link to a fresh server: go through app.py's router (see ui/state.py)

RATIOS = [0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, MAX_PRUNE_RATIO]
FINETUNE = [0, 20, 60, 100, 200, 500, 1000]
DEFAULTS = {"sw_methods": ["l1-structured"], "sw_ratios": [0.0, 0.5], "sw_bits": [32, 8],
            "sw_gran": ["per-channel"], "sw_exec": ["dense"], "sw_ft": [60], "sw_batch": 32}

def load_recipe() -> None:
    upload = st.session_state.get("sw_recipe_file")
    if upload is None:
        return
    try:
        recipes.load_into_form(recipes.parse(upload.getvalue(), upload.name, current_model()["scenario"]))
        st.session_state["sw_recipe_flash"] = f"Loaded the settings of {upload.name}."
    except GeminiError as exc:
        st.session_state["sw_recipe_flash"] = f"error: {exc}"


def recipe_expander(scenario: str) -> None:
    with st.expander("Recipe: save these settings to a file, or load them"):
        recipe = recipes.recipe_from_form(st.session_state, scenario)
        r = st.columns([1, 1, 3])
        r[0].download_button("Save as JSON", recipes.dump(recipe, "json"), file_name="sweep-recipe.json",
                             mime="application/json", key="sw_recipe_json")
        r[1].download_button("Save as YAML", recipes.dump(recipe, "yaml"), file_name="sweep-recipe.yaml",
                             mime="application/yaml", key="sw_recipe_yaml")
        r[2].file_uploader("Load a recipe (JSON or YAML)", type=["json", "yaml", "yml"], key="sw_recipe_file",
                           on_change=load_recipe)
        flash = st.session_state.pop("sw_recipe_flash", None)
        if flash:
            (st.error if flash.startswith("error: ") else st.success)(flash.removeprefix("error: "))



def show_cluster() -> None:
    address = (st.session_state.get("sw_ray_address") or "").strip() or None
    try:
        st.session_state["sw_cluster"] = cluster_summary(address)
        st.session_state.pop("sw_cluster_error", None)
    except GeminiError as exc:
        st.session_state["sw_cluster_error"] = str(exc)
        st.session_state.pop("sw_cluster", None)


def executor_section(task: str) -> None:
    """Local or Ray (address, cluster summary); ``task``: what one Ray task runs."""
    ray_ok = ray_available()
    if not ray_ok:
        st.session_state["sw_executor"] = "local"
    c = st.columns([1, 2, 1])
    c[0].radio("Executor", ["local", "ray"], key="sw_executor", horizontal=True, disabled=not ray_ok,
               help=f"local: this process, one point after another; ray: {task} on a Ray cluster, "
                    "points streamed back as they finish")
    if not ray_ok:
        c[1].info(f"{RAY_MISSING}; sweeps run locally.")
    elif st.session_state.get("sw_executor") == "ray":
        c[1].text_input("Ray address", key="sw_ray_address", placeholder="empty: a local instance; auto or HOST:PORT",
                        help="the head node of a cluster started with `ray start --head` (see the README)")
        c[2].button("Show cluster", key="sw_cluster_btn", on_click=show_cluster,
                    help="connect (a local instance takes ~10 s to start) and list its nodes")
        if st.session_state.get("sw_cluster_error"):
            st.error(f"Ray: {st.session_state['sw_cluster_error']}")
        cluster = st.session_state.get("sw_cluster")
        if cluster:
            st.caption(f"Ray {cluster['ray_version']} at **{cluster['address']}**: {cluster['n_nodes']} node(s), "
                       f"{cluster['cpus']:g} CPUs, {cluster['gpus']:g} GPUs. Each point records the host and device "
                       "that measured it.")
            st.dataframe(cluster["nodes"], hide_index=True)


st.title("Sweep")
model = current_model()
st.caption(f"Model: **{model_label(model)}** (change it on the Model page). Every point is saved as soon as it "
           "is measured; a cancelled or interrupted sweep keeps its finished points.")
if model["scenario"] == "llm":  # the causal LM: its own grid, perplexity charts (lower is better)
    llm_spec, llm_error = llm_ui.sweep_form()
    job = current_job("sweep")
    running = job is not None and job.running
    if llm_error:
        st.error(f"This grid cannot run: {llm_error}")
    else:
        st.info(f"**{llm_spec.n_points()} points** (the uncompressed model is always included) · about "
                f"**{llm_spec.estimate_seconds() / 60:.0f} min** for SmolLM2 on 2 busy cores (estimate; a tiny "
                "model takes far less)")
    st.text_input("Run name (optional)", key="sw_name", placeholder="e.g. rtn vs gptq at 4 bits")
    recipe_expander("llm")
    executor_section("one task per point")
    b = st.columns([1, 1, 1, 3])
    b[0].button("Start sweep", key="sw_start", type="primary", disabled=running or llm_spec is None,
                on_click=lambda: views.start_sweep(llm_spec, run_name=st.session_state.get("sw_name") or None))
    b[1].button("Run demo sweep", key="sw_demo", on_click=views.start_demo, disabled=running,
                help=f"the LLM demo grid ({llm_ui.demo_spec().n_points()} points; no 4-bit groups of 32)")
    b[2].button("Cancel", key="sw_cancel", on_click=views.cancel_sweep, disabled=not running)
    b[3].button("Fill in the demo grid", key="sw_fill_demo", on_click=llm_ui.use_demo_grid)
    show_job_error()
    st.divider()
    points_view.sweep_live_view("sweep")
    st.stop()
remembered = shared_memory().get("sweep_form") or {}  # a reload / new tab: the last form of this server
for k, v in DEFAULTS.items():
    st.session_state.setdefault(k, remembered.get(k, v))
if remembered.get("sw_name"):
    st.session_state.setdefault("sw_name", remembered["sw_name"])


def _valid_ratios(values) -> set:
    """Ratios the form may offer: numbers in [0, MAX_PRUNE_RATIO]; anything else (forced into the session) is
    left out, so the multiselect drops it."""
    out = set()
    for v in values or []:
        try:
            r = float(v)
        except (TypeError, ValueError):
            continue
        if 0.0 <= r <= MAX_PRUNE_RATIO:
            out.add(r)
    return out


st.session_state["sw_ratio_choices"] = sorted(_valid_ratios(RATIOS) | _valid_ratios(
    st.session_state.get("sw_ratio_choices")) | _valid_ratios(st.session_state.sw_ratios))


def use_demo_grid() -> None:
    st.session_state.update(sw_methods=list(DEMO_GRID["prune_methods"]), sw_ratios=list(DEMO_GRID["prune_ratios"]),
                            sw_bits=list(DEMO_GRID["bits"]), sw_gran=list(DEMO_GRID["granularities"]),
                            sw_exec=list(DEMO_GRID["executions"]), sw_ft=list(DEMO_GRID["finetune_steps"]),
                            sw_batch=DEMO_GRID["batch_size"])


c = st.columns(3)
c[0].multiselect("Prune methods", PRUNE_METHODS, key="sw_methods",
                 help="structured methods remove whole channels; unstructured zero single weights; "
                      "2:4 keeps 2 of every 4")
c[1].multiselect("Prune ratios", st.session_state.sw_ratio_choices, key="sw_ratios",
                 help="share removed; 0 keeps the model unpruned; type others below")


def add_ratios() -> None:
    text = st.session_state.get("sw_custom_ratios", "")
    try:
        typed = SweepSpec.from_strings(prune_ratios=text).prune_ratios if text.strip() else ()
    except GeminiError as exc:
        st.session_state["sw_ratio_error"] = str(exc)
        return
    st.session_state.pop("sw_ratio_error", None)
    st.session_state["sw_ratio_choices"] = sorted(set(st.session_state.sw_ratio_choices) | set(typed))
    st.session_state["sw_ratios"] = sorted(set(st.session_state.sw_ratios) | set(typed))
    st.session_state["sw_custom_ratios"] = ""


c[1].text_input("Other ratios (comma separated, Enter adds them)", key="sw_custom_ratios", on_change=add_ratios,
                placeholder=f"e.g. 0.35, 0.65 (0 to {MAX_PRUNE_RATIO:g})")
if st.session_state.get("sw_ratio_error"):
    c[1].error(st.session_state["sw_ratio_error"])
c[2].multiselect("Fine-tune steps after pruning", FINETUNE, key="sw_ft")
c = st.columns(4)
c[0].multiselect("Bit widths", BITS, key="sw_bits", help="32 = float; 16 = half; 8 and below = integer codes")
c[1].multiselect("Granularity (8 bits and below)", GRANULARITIES, key="sw_gran")
c[2].multiselect("Execution", EXECUTIONS, key="sw_exec", help="dense kernels, or sparse kernels for pruned weights")
c[3].number_input("Batch size (latency, memory)", min_value=1, max_value=4096, step=1, key="sw_batch")
st.text_input("Run name (optional)", key="sw_name", placeholder="e.g. l1 vs 2:4 at 8 bits")
shared_memory()["sweep_form"] = {k: st.session_state.get(k) for k in [*DEFAULTS, "sw_name"]}

recipe_expander(model["scenario"])


executor_section("one task per pruning setting")

spec, spec_error = None, None
try:
    spec = SweepSpec(prune_methods=tuple(st.session_state.sw_methods), prune_ratios=tuple(st.session_state.sw_ratios),
                     bits=tuple(st.session_state.sw_bits), granularities=tuple(st.session_state.sw_gran),
                     executions=tuple(st.session_state.sw_exec), finetune_steps=tuple(st.session_state.sw_ft),
                     batch_size=int(st.session_state.sw_batch))
except GeminiError as exc:
    spec_error = str(exc)

job = current_job("sweep")
running = job is not None and job.running
if spec_error:
    st.error(f"This grid cannot run: {spec_error}")
else:
    low, high, source = estimate_range(spec, model["scenario"])
    st.info(f"**{spec.n_points()} points** ({len(spec.prune_settings())} pruning settings; the dense fp32 "
            f"reference is always included) · about **{format_range(low, high)}** (estimate from {source})")
    st.session_state["sweep_estimate_s"] = high


def start() -> None:
    if spec is not None:
        views.start_sweep(spec, run_name=st.session_state.get("sw_name") or None)


b = st.columns([1, 1, 1, 3])
b[0].button("Start sweep", key="sw_start", type="primary", on_click=start, disabled=running or spec is None)
b[1].button("Run demo sweep", key="sw_demo", on_click=views.start_demo, disabled=running,
            help="the demo grid (32 points) on the current model")
b[2].button("Cancel", key="sw_cancel", on_click=views.cancel_sweep, disabled=not running)
b[3].button("Fill in the demo grid", key="sw_fill_demo", on_click=use_demo_grid)
show_job_error()
st.divider()
points_view.sweep_live_view("sweep")
