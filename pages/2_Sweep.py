"""Sweep: choose a grid, see its size and a time estimate, run it in the background, watch it fill in."""
import streamlit as st

from gemini_core.errors import GeminiError
from gemini_core.workflows.ray_executor import RAY_MISSING, cluster_summary, ray_available
from ui import points_view, recipes, views
from ui.kinds import for_scenario
from ui.state import current_job, current_model, model_label, show_job_error, use_router

use_router()  # deep link to a fresh server: go through app.py's router (see ui/state.py)

def load_recipe() -> None:
    upload = st.session_state.get("sw_recipe_file")
    if upload is None:
        return
    try:
        scenario = current_model()["scenario"]
        recipes.load_into_form(recipes.parse(upload.getvalue(), upload.name, scenario), scenario)
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
kind_ui = for_scenario(model["scenario"])  # the grid form of the current model's kind
st.caption(f"Model: **{model_label(model)}** (change it on the Model page). Every point is saved as soon as it "
           "is measured; a cancelled or interrupted sweep keeps its finished points.")
spec, spec_error = kind_ui.sweep_form()
st.text_input("Run name (optional)", key="sw_name", placeholder="e.g. l1 vs 2:4 at 8 bits")
recipe_expander(model["scenario"])
executor_section(kind_ui.RAY_TASK)

job = current_job("sweep")
running = job is not None and job.running
if spec_error:
    st.error(f"This grid cannot run: {spec_error}")
else:
    st.info(kind_ui.plan_text(spec, model))


def start() -> None:
    if spec is not None:
        views.start_sweep(spec, run_name=st.session_state.get("sw_name") or None)


st.checkbox("Measure again", key="sw_force",
            help="measure every point anew, even those already measured with this model and these settings "
                 "(otherwise they are reused from the run store)")
b = st.columns([1, 1.4, 0.9, 2.7])  # "Run demo sweep" stays on one line at 1280 px
b[0].button("Start sweep", key="sw_start", type="primary", on_click=start, disabled=running or spec is None)
b[1].button("Run demo sweep", key="sw_demo", on_click=views.start_demo, disabled=running, help=kind_ui.demo_help())
b[2].button("Cancel", key="sw_cancel", on_click=views.cancel_sweep, disabled=not running)
b[3].button("Fill in the demo grid", key="sw_fill_demo", on_click=kind_ui.use_demo_grid)
show_job_error()
st.divider()
points_view.sweep_live_view("sweep")
