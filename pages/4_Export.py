"""Export: a chosen point as a checkpoint that reloads; prove it (accuracy, size); download it."""
from pathlib import Path

import streamlit as st

from gemini_core.checkpoint.archive import zip_export
from gemini_core.checkpoint.format import FORMATS, RECIPE_FILE
from gemini_core.checkpoint.write import check_destination
from gemini_core.errors import GeminiError
from gemini_core.fsio import clean_stale, is_staging_name
from gemini_core.paths import export_destination, exports_dir
from gemini_core.results.metrics import metric_of
from gemini_core.results.pareto import finite
from gemini_core.results.peers import is_peer
from gemini_core.results.store import Store
from gemini_core.results.suggest import recommend
from gemini_core.results.table import points_frame, shippable_points
from gemini_core.workflows.export import evaluate_export, export_point, overrides_from_run
from ui import explore, points_view, views
from ui.downloads import chart_downloads
from ui.jobs import FunctionJob
from ui.kinds import for_kind
from ui.runtime_view import runtime_details
from ui.state import (
    check_typed_path,
    chosen_point_id,
    current_job,
    current_model,
    model_label,
    model_runs,
    registry,
    run_label,
    run_of_model,
    runs_with_points_or_stop,
    save_upload,
    select_point,
    show_job_error,
    submit,
    take_point_from_link,
    use_router,
)

use_router()  # deep link to a fresh server: go through app.py's router (see ui/state.py)



def _chosen_of_model(store, model: dict) -> int | None:
    """The point chosen to export (not one only clicked in a chart to read it), when it belongs to a run of the
    current model."""
    pid = chosen_point_id()
    if pid is None:
        return None
    try:
        return pid if run_of_model(store.get_run(store.get_point(pid)["run_id"]), model) else None
    except GeminiError:
        return pid  # the page says below that the point is gone


st.title("Export")
take_point_from_link(reset=("x_source",))
store, runs = runs_with_points_or_stop("export")

model = current_model()
if st.session_state.get("x_model") != model_label(model):  # another model: its own run and recommendation
    st.session_state["x_model"] = model_label(model)
    for key in ("x_run", "x_point", "x_source"):
        st.session_state.pop(key, None)
chosen = _chosen_of_model(store, model)
sources = (["the point chosen on the Sweep page"] if chosen is not None else []) + ["a point from the history"]
source = st.radio("Export", sources, horizontal=True, key="x_source")
if source.startswith("the point") and chosen is not None:
    pid = chosen
else:
    labels = {r["run_id"]: run_label(r, model) for r in runs}
    if st.session_state.get("x_run") not in labels:
        mine = model_runs(runs, model) or runs  # another model's run only when this one has none
        st.session_state["x_run"] = mine[0]["run_id"]
    run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="x_run")
    df_run = points_frame(store.points(run_id))
    metric_run = metric_of(df_run)
    pts = shippable_points(df_run)  # a library peer is measured for comparison only
    pts = pts.assign(_good=pts[metric_run.column].map(metric_run.goodness)).sort_values(
        ["pareto", "_good"], ascending=[False, False])
    # the one ship rule under the Overview's bounds (they live in the session and the address), as on the Report
    rec = recommend(df_run, explore.constraints())
    recommended = rec.point_id
    st.caption(f"Recommended under the Overview's bounds ({rec.constraints.describe()}): "
               + (f"#{recommended}, marked “· recommended” below." if recommended is not None
                  else "no point meets them."))
    plabels = {int(r["point_id"]): points_view.point_label(r, metric_run)
               + (" · recommended" if int(r["point_id"]) == recommended else "") for r in pts.to_dict("records")}
    if st.session_state.get("x_point") not in plabels:
        st.session_state["x_point"] = recommended if recommended in plabels else next(iter(plabels), None)
    pid = st.selectbox("Point", list(plabels), format_func=plabels.get, key="x_point")
    if pid is not None:
        select_point(pid, source="history")

try:
    point = store.get_point(pid)
    run = store.get_run(point["run_id"])
except GeminiError as exc:
    st.error(f"Point {pid} is no longer in the history ({exc}); choose another one.")
    st.stop()
if is_peer(point):  # chosen on another page: say why there is nothing to export
    st.warning(f"Point #{pid} is a library peer ({point['peer']}), measured for comparison only: it cannot be "
               "exported. Choose one of the product's points.")
    st.stop()
df = points_frame(store.points(point["run_id"]))
row = df[df["point_id"] == pid].iloc[0]
st.markdown(f"**Point #{pid}**: {point['label']} · run *{run['name']}* ({run['scenario']})")
kind_ui = for_kind(point.get("kind"))  # the point's kind shows its own figures and reload check
kind_ui.point_metrics(point, row)
if finite(row["speedup"]) and row["speedup"] < 1.0:
    st.warning(f"This point is slower than the dense fp32 reference (speed-up {row['speedup']:.2f}x).")
runtime_details(point, key="x_runtime")

st.subheader("Checkpoint")
job = current_job("export")
running = job is not None and job.running
formats = st.multiselect("Formats", list(FORMATS), default=["gemini"], key="x_formats",
                         help="gemini: compressed checkpoint that reloads with gemini_core.checkpoint.load.load; "
                              "hf: plain transformers folder (text models); onnx: ONNX graph")

folder_text = st.text_input("Export folder", key="x_folder", placeholder=f"point-{pid}",
                            help=f"a folder name inside {exports_dir()}; paths that lead outside it are refused")
folder_text = folder_text.strip() or f"point-{int(pid)}"
destination = None
replace = False
holds_files = False
try:  # the engine resolves '..', '~' and symlinks and refuses anything outside <home>/exports (and over-long names)
    destination = export_destination(folder_text)
    try:
        holds_files = destination.is_dir() and any(destination.iterdir())
    except OSError as exc:  # what the file system refuses to look at is one line too, never a traceback
        raise GeminiError(f"{destination.name[:40]} cannot be looked at: {exc.strerror or exc}") from None
    if holds_files:
        check_destination(destination, overwrite=True)  # only an earlier export of ours may be replaced
        replace = st.checkbox(f"Replace the existing export {destination.name}", key="x_replace",
                              help="the folder holds an earlier export; it is replaced only once the new one is "
                                   "complete")
        last = job.snapshot() if job is not None and job.done else None
        just_made = bool(last and last["state"] == "done" and last["result"]
                         and Path(last["result"]["path"]) == destination)
        if just_made and not replace:  # the export that just succeeded, not a stranger's to warn about
            st.caption(f"{destination.name} holds the export just made; tick the box to export into it again.")
        elif not replace:
            st.warning(f"{destination.name} already holds an export: tick the box to replace it, or choose "
                       "another folder name.")
except GeminiError as exc:
    destination = None
    st.error(f"This folder cannot be used: {exc}")


def do_export(j, point_id=int(pid), options=kind_ui.export_options(formats), folder=folder_text,
              overwrite=replace):
    out_dir = export_destination(folder)  # checked again when the job runs (a symlink may have changed)
    path = export_point(Store(), point_id, out_dir, overwrite=overwrite, **options,
                        progress=lambda event: setattr(j, "message", getattr(event, "message", str(event))))
    j.message = "reloading the export and measuring it again"
    store = Store()
    check = evaluate_export(path, data_overrides=overrides_from_run(store.get_run(store.get_point(point_id)["run_id"])))
    return {"point_id": point_id, "path": str(path), "check": check}


def start_export() -> None:
    # Same lane as sweeps: an export re-measures latency, which a running sweep would skew (and vice versa).
    submit(FunctionJob(f"export of point #{int(pid)}", do_export, kind="export", lane="compute"))

sweeping = any(j.kind in ("sweep", "train") for j in registry().running())
st.button(f"Export point #{pid}", key="x_export", type="primary", on_click=start_export,
          disabled=running or sweeping or destination is None or (holds_files and not replace))
if sweeping:
    st.caption("A sweep or training is running: exporting waits for it (it re-measures latency on the same CPU).")
show_job_error()

@st.fragment(run_every=views.POLL_SECONDS if running else None)
def export_view(polling: bool) -> None:
    job = current_job("export")
    if job is None:
        return
    snap = job.snapshot()
    if views.task_status(snap):
        res = snap["result"]
        check, path = res["check"], res["path"]
        st.success(f"Exported point #{res['point_id']} to {path}")
        for_kind(check.get("kind")).export_result(check, point)
        folder = Path(path).name  # two exports of one point into two folders download under two names
        zip_name = f"gemini-point-{res['point_id']}" + ("" if folder == f"point-{res['point_id']}" else f"-{folder}")
        st.download_button("Download checkpoint (.zip)", data=lambda p=path: zip_export(p),
                           file_name=f"{zip_name}.zip", mime="application/zip",
                           key="x_zip", on_click="ignore", type="primary")
        st.session_state["last_export"] = res
    if polling and job.done:
        st.rerun()

export_view(running)

st.subheader("Points and charts of this run")
chart_downloads(df, point["run_id"], key="x_dl")

st.subheader("Check a checkpoint")
st.caption("An export from this machine or one a colleague sent (its .zip): its files are checked against the "
           "checksums in its recipe, the model is rebuilt from safetensors only (never a pickle) and measured "
           "again. A checkpoint never chooses what is read: exports of digits or breast-cancer are measured on "
           "the built-in data; for others, give the test data (and, for hf: models, the model folder) here.")
clean_stale(exports_dir())  # what killed exports left behind is never offered
exported = sorted((p.name for p in exports_dir().glob("*")
                   if not is_staging_name(p.name) and (p / RECIPE_FILE).is_file()),
                  reverse=True) if exports_dir().is_dir() else []
c1, c2 = st.columns(2)
check_folder = c1.selectbox("An export folder", exported, index=None, key="x_check_folder",
                            placeholder="no exports yet" if not exported else "choose an export")
check_zip = c2.file_uploader("…or upload an export (.zip)", type=["zip"], key="x_check_zip")
d1, d2 = st.columns(2)
check_data_upload = d1.file_uploader("Test data for the check (not needed for built-in data)", type=None,
                                     key="x_check_data_upload")
check_data_path = d1.text_input("…or the path of the test data on this machine", key="x_check_data_path",
                                help="inside the home folder or GEMINI_DATA_ROOTS, like every typed path")
check_model_path = d2.text_input("hf: exports: the model folder", key="x_check_model",
                                 help="the folder with the model's config and tokenizer (inside the home folder or "
                                      "GEMINI_DATA_ROOTS); a recipe's own model source is never opened or fetched")


def check_target() -> str | None:
    if check_zip is not None:
        return save_upload(check_zip, "export.zip")
    return str(exports_dir() / check_folder) if check_folder else None


def check_overrides() -> dict:
    """The data (and model folder) the user names now, through the typed-path roots rule."""
    data = save_upload(check_data_upload) if check_data_upload is not None else check_data_path.strip() or None
    if data and check_data_upload is None:
        check_typed_path(data, "test data path")
    model = check_model_path.strip() or None
    if model:
        check_typed_path(model, "model folder")
    return {"data": data, "model": model}


def do_check(j, target: str, overrides: dict):
    j.message = "verifying checksums, rebuilding and measuring"
    return {"path": target, "check": evaluate_export(target, data_overrides=overrides)}


def start_check() -> None:
    try:
        target, overrides = check_target(), check_overrides()
    except GeminiError as exc:
        st.session_state["job_error"] = f"The check cannot start: {exc}"
        return
    if target:
        submit(FunctionJob(f"check of {Path(target).name}", lambda j: do_check(j, target, overrides), kind="check",
                           lane="compute"))


checking = current_job("check")
check_running = checking is not None and checking.running
st.button("Verify and measure again", key="x_check", on_click=start_check,
          disabled=check_running or sweeping or (check_zip is None and not check_folder))


@st.fragment(run_every=views.POLL_SECONDS if check_running else None)
def check_view(polling: bool) -> None:
    job = current_job("check")
    if job is None:
        return
    snap = job.snapshot()
    if views.task_status(snap):
        check = snap["result"]["check"]
        for_kind(check.get("kind")).check_result(check, snap["title"])
    if polling and job.done:
        st.rerun()


check_view(check_running)
