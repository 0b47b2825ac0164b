"""History: every stored run; open one (charts, table, recommendation); re-run its settings; compare runs;
rename; delete (with confirmation)."""
import datetime as dt

import pandas as pd
import streamlit as st

from gemini_core.charts.sweep import fig_fronts_overlay
from gemini_core.errors import GeminiError
from gemini_core.results.metrics import metric_of
from gemini_core.results.store import Store
from gemini_core.results.suggest import recommend
from gemini_core.results.table import points_frame
from ui import explore, points_view, recipes
from ui.state import current_model, registry, run_of_model, shared_memory, use_router

use_router()  # deep link to a fresh server: go through app.py's router (see ui/state.py)

st.title("History")
try:
    store = Store()
    runs = store.runs()
except GeminiError as exc:
    st.error(f"The run history cannot be read: {exc}")
    st.stop()

flash = st.session_state.pop("h_flash", None)
if flash:
    st.success(flash)
error = st.session_state.pop("h_error", None)
if error:
    st.error(error)
if not runs:
    st.info("No runs yet. Run the demo sweep on the Overview page or a sweep on the Sweep page.")
    st.stop()


model = current_model()


def run_label(run: dict) -> str:
    """Runs of another model than the current one are marked: the other pages show only the current model's."""
    when = dt.datetime.fromtimestamp(run["created_at"]).strftime("%Y-%m-%d %H:%M")
    other = "" if run_of_model(run, model) else " · another model"
    return f"{run['name']} · {run['scenario']} · {run['points_ok']} points · {when} · {run['run_id']}{other}"


def baseline_accuracy_pct(run: dict) -> float:
    """The baseline's test accuracy in percent; NaN (shown empty) for a model measured in another metric."""
    value = (run.get("baseline") or {}).get("test_accuracy")
    return float(value) * 100 if isinstance(value, (int, float)) else float("nan")


labels = {r["run_id"]: run_label(r) for r in runs}
by_id = {r["run_id"]: r for r in runs}
table = pd.DataFrame([{
    "run": r["run_id"], "name": r["name"], "scenario": r["scenario"],
    "model": "current model" if run_of_model(r, model) else "another model", "status": r["status"],
    "points ok": r["points_ok"], "points failed": r["points_failed"],
    "baseline accuracy (%)": baseline_accuracy_pct(r),
    "created": dt.datetime.fromtimestamp(r["created_at"]).strftime("%Y-%m-%d %H:%M:%S"),
} for r in runs])
st.dataframe(table, hide_index=True, key="h_runs", column_config={
    "baseline accuracy (%)": st.column_config.NumberColumn(format="%.2f")})

st.subheader("Open a run")
# The opened run is in the address (?run=ID): a reload or a shared link opens it again; without one, the run
# last opened on this server (kept in the home folder, so after a restart too).
wanted = st.query_params.get("run") or shared_memory().get("history_run")
if wanted in labels and st.session_state.get("h_open") is None:
    st.session_state["h_open"] = wanted
if st.session_state.get("h_open") not in labels:
    st.session_state.pop("h_open", None)


def remember_open() -> None:
    if st.session_state.get("h_open"):
        st.query_params["run"] = st.session_state["h_open"]


opened = st.selectbox("Run to open (its charts, table and the recommendation)", list(labels), index=None,
                      format_func=labels.get, key="h_open", on_change=remember_open, placeholder="choose a run")
if opened:
    st.query_params["run"] = opened
    shared_memory()["history_run"] = opened

    def rerun_settings(run_id=opened) -> None:
        try:
            recipes.check_kind(by_id[run_id]["spec"], current_model()["scenario"], f"run {run_id}")
            recipes.load_into_form(recipes.form_values(by_id[run_id]["spec"], name=f"{by_id[run_id]['name']} (again)"),
                                   current_model()["scenario"])
        except GeminiError as exc:
            st.session_state["h_error"] = f"Cannot re-run {run_id}: {exc}"
            return
        st.session_state["h_goto_sweep"] = True

    st.button("Re-run these settings…", key="h_rerun", on_click=rerun_settings,
              help="fills the Sweep page's form with this run's grid; check it and press Start sweep there")
    if st.session_state.pop("h_goto_sweep", False):
        st.switch_page("pages/2_Sweep.py")
    points_view.stored_run_view(store, by_id[opened])

st.subheader("Compare runs")
default = [r["run_id"] for r in runs if r["points_ok"] > 1][:2]
chosen = st.multiselect("Runs to compare (two or more)", list(labels), default=default, format_func=labels.get,
                        key="h_compare")
if len(chosen) >= 2:
    frames = {}
    for run_id in chosen:
        name = by_id[run_id]["name"]
        if name in frames:
            name = f"{name} ({run_id})"
        frames[name] = points_frame(store.points(run_id))
    st.plotly_chart(fig_fronts_overlay(frames), key="h_overlay")
    bounds = explore.constraints()
    rows = []
    for name, frame in frames.items():
        rec = recommend(frame, bounds)
        metric = metric_of(frame)  # each run in its own kind's quality metric
        ok = frame[frame["status"] == "ok"] if len(frame) else frame
        values = ok[metric.column] if metric.column in ok.columns else []
        best = (values.max() if metric.higher_is_better else values.min()) if len(values) else float("nan")
        p = rec.point or {}
        rows.append({"run": name, "points": int((frame["status"] == "ok").sum()) if len(frame) else 0,
                     "best quality": f"{metric.label} {metric.format(best)}" if best == best else "–",
                     "recommended": f"#{rec.point_id} {p.get('label')}" if rec.point else "none meets the bounds",
                     "its quality": f"{metric.label} {metric.format(p.get(metric.column))}" if rec.point else "–",
                     "its latency p50 (ms)": f"{p['latency_ms_p50']:.3g}" if rec.point else "–",
                     "its size (KB)": f"{p['size_kb']:.1f}" if rec.point else "–",
                     # the bounds as they apply to this run: in its own metric (points of accuracy, % perplexity)
                     "bounds in its metric": rec.constraints.describe()})
    st.caption("The point each run would ship under the Overview's bounds, each run in its own quality metric:")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="h_compare_table")
elif chosen:
    st.caption("Choose at least two runs to overlay their fronts.")

st.subheader("Manage a run")
if st.session_state.get("h_target") not in labels:
    st.session_state.pop("h_target", None)  # the run it held was deleted
target = st.selectbox("Run", list(labels), format_func=labels.get, key="h_target")
busy_runs = {getattr(j, "run_id", None) for j in registry().running()}
c1, c2 = st.columns([3, 1])
new_name = c1.text_input("New name", value=by_id[target]["name"], key=f"h_name_{target}")


def rename() -> None:
    try:
        Store().rename_run(target, st.session_state.get(f"h_name_{target}", ""))
        st.session_state["h_flash"] = f"Renamed run {target}."
    except GeminiError as exc:
        st.session_state["h_error"] = str(exc)


c2.button("Rename", key="h_rename", on_click=rename)

if st.session_state.get("h_confirm") != target:
    st.button("Delete run…", key="h_delete", disabled=target in busy_runs,
              on_click=lambda run_id=target: st.session_state.update(h_confirm=run_id),
              help="a running sweep's run cannot be deleted; cancel it first" if target in busy_runs else None)
else:
    st.warning(f"Delete **{by_id[target]['name']}** and its {by_id[target]['points_ok']} points? Exports already "
               "written stay on disk. This cannot be undone.")
    d1, d2 = st.columns([1, 5])

    def delete() -> None:
        try:
            Store().delete_run(target)
            st.session_state["h_flash"] = f"Deleted run {target}."
        except GeminiError as exc:
            st.session_state["h_error"] = str(exc)
        st.session_state.pop("h_confirm", None)

    d1.button("Yes, delete", key="h_delete_yes", type="primary", on_click=delete)
    d2.button("Keep it", key="h_delete_no", on_click=lambda: st.session_state.pop("h_confirm", None))
