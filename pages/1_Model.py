"""Model: choose the scenario and its data, check the data, train or load the baseline and see its card."""
import dataclasses

import streamlit as st

from gemini_core.charts.training import fig_adaptive_training, fig_training
from gemini_core.errors import GeminiError
from gemini_core.kinds.registry import kind_for_scenario
from gemini_core.scenarios import get_scenario, scenario_entries
from ui import views
from ui.compute_jobs import TrainJob
from ui.kinds import for_scenario
from ui.state import (
    check_model_source,
    check_typed_path,
    current_job,
    current_model,
    job_of_model,
    save_upload,
    set_model,
    shared_memory,
    show_job_error,
    submit,
    use_router,
)

use_router()  # deep link to a fresh server: go through app.py's router (see ui/state.py)

# The scenario registry's entries ("hf:" shown as "hf": its model id or folder is asked below).
CHOICES = {entry.name.rstrip(":"): entry.label for entry in scenario_entries().values()}
DATA_KIND = {entry.name.rstrip(":"): entry.data_kind for entry in scenario_entries().values()}
HEADERS = {"infer": "infer", "yes": True, "no": False}

st.title("Model")
model = current_model()
# A reload or a new tab (a new session) gets the last form of this server back: data file (an upload is
# kept by the path it was saved under), columns, header, training mode.
FORM_KEYS = ("m_scenario", "m_data_path", "m_header", "m_text_col", "m_label_col", "m_hf_source", "m_images_path",
             "m_mode")
for _k, _v in (shared_memory().get("model_form") or {}).items():
    if _k in FORM_KEYS and _v is not None:
        st.session_state.setdefault(_k, _v)
if "m_scenario" not in st.session_state:
    st.session_state["m_scenario"] = "hf" if model["scenario"].startswith("hf:") else model["scenario"]
choice = st.selectbox("Scenario", list(CHOICES), format_func=CHOICES.get, key="m_scenario")
options: dict = {}
problem: str | None = None


@st.cache_data(show_spinner=False, max_entries=20)
def cached_preview(path: str, header, label_column, mtime: float):
    from gemini_core.scenarios.table_data import preview

    return preview(path, rows=20, label_column=label_column, header=header)


def data_file_section(kind: str) -> None:
    """Upload (or path), preview, column pickers and label counts for text / hf / tabular."""
    global problem
    upload = st.file_uploader("Upload a CSV or TSV file", type=None, key="m_upload",
                              help="saved under the app's home folder (uploads/); the limit is 200 MB. Any name "
                                   "(SMSSpamCollection too): the file is recognised by its content")
    st.text_input("…or the path of a file on this machine", key="m_data_path",
                  placeholder="/data/reviews.tsv")
    try:
        path = save_upload(upload) if upload is not None else (st.session_state.get("m_data_path") or "").strip()
    except GeminiError as exc:
        problem = str(exc)
        st.error(f"The upload could not be saved: {exc}")
        return
    if upload is not None:
        shared_memory().setdefault("model_form", {})["m_data_path"] = path  # the saved copy, for a reload
    if not path:
        problem = "choose a data file"
        st.info("Upload a file (or give a path) to see a preview and pick its columns.")
        return
    if upload is None:
        try:
            check_typed_path(path, "data path")
        except GeminiError as exc:
            problem = str(exc)
            st.error(f"This path cannot be used: {exc}")
            return
    header_key = st.radio("Header row", list(HEADERS), horizontal=True, key="m_header",
                          help="infer: decide from the first row")
    header = HEADERS[header_key]
    options.update(data=path, header=header)
    from pathlib import Path

    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        problem = f"data file {path!r} does not exist"
        st.error(problem)
        return
    try:
        prev = cached_preview(path, header, None, mtime)
    except GeminiError as exc:
        problem = str(exc)
        st.error(f"Cannot read this file: {exc}")
        return
    st.caption(f"Preview of {Path(path).name}: first {len(prev.head)} rows")
    st.dataframe(prev.head, hide_index=True, height=240, key="m_preview")
    for note in prev.notes:
        st.caption(f"ℹ️ {note}")
    cols = prev.columns
    c1, c2 = st.columns(2)
    if kind in ("text", "hf"):
        text_col = c1.selectbox("Text column", cols, index=None, key="m_text_col",
                                placeholder="let the engine guess")
        if text_col is not None:
            options["text_column"] = text_col
    label_col = c2.selectbox("Label column", cols, index=None, key="m_label_col", placeholder="let the engine guess")
    if label_col is not None:
        options["label_column"] = label_col
        try:
            counts = cached_preview(path, header, label_col, mtime).label_counts
            c2.caption("Label counts in the file: " + ", ".join(f"{k}: {v}" for k, v in list(counts.items())[:15]))
        except GeminiError as exc:
            c2.error(str(exc))
    st.button("Check the data", key="m_validate", on_click=validate, args=(kind, dict(options)))
    summary = st.session_state.get("m_validation")
    if summary and summary.get("key") == repr(sorted(options.items(), key=str)):
        if summary.get("error"):
            st.error(f"The data cannot be used: {summary['error']}")
        else:
            st.success(f"{summary['rows']} usable rows · {len(summary['classes'])} classes · label counts: "
                       + ", ".join(f"{k}: {v}" for k, v in summary["label_counts"].items()))
            for note in summary.get("notes", []):
                st.caption(f"ℹ️ {note}")


def validate(kind: str, options: dict) -> None:
    """on_click of "Check the data": a full read of the file with the chosen columns."""
    key = repr(sorted(options.items(), key=str))
    try:
        if kind in ("text", "hf"):
            from gemini_core.scenarios.table_data import validate_text_file

            summary = validate_text_file(options["data"], options.get("text_column"), options.get("label_column"),
                                         options.get("header", "infer"))
        else:
            from gemini_core.scenarios.table_data import load_feature_table

            table = load_feature_table(options["data"], options.get("label_column"), options.get("header", "infer"))
            summary = {"rows": len(table.labels), "classes": table.class_names,
                       "label_counts": table.label_counts(), "notes": table.notes}
        st.session_state["m_validation"] = {"key": key, **summary}
    except GeminiError as exc:
        st.session_state["m_validation"] = {"key": key, "error": str(exc)}


def adaptive_form(scenario, choice: str, problem: str | None):
    """Adaptive-training settings; returns (settings as a dict or None, problem)."""
    from gemini_core.adaptive import (
        GUARD_ACTIONS,
        LR_POLICIES,
        MASK_MODES,
        PRUNE_METHODS,
        PRUNE_SCHEDULES,
        QAT_BITS,
        AdaptiveSettings,
    )
    from gemini_core.config import GRANULARITIES

    defaults = scenario.default_train
    with st.expander("Adaptive training settings", expanded=True):
        c = st.columns(4)
        epochs = c[0].number_input("Epochs", 1, 1000, defaults.epochs, key=f"a_epochs_{choice}")
        lr = c[1].number_input("Peak learning rate", 1e-6, 1.0, float(defaults.lr), format="%.6f",
                               key=f"a_lr_{choice}")
        policy = c[2].selectbox("Learning-rate policy", LR_POLICIES, index=LR_POLICIES.index("adaptive"),
                                key="a_policy", help="adaptive: reduce on plateau, back off after a validation drop")
        patience = c[3].number_input("Early stop after epochs without gain (0 = off)", 0, 100, 0, key="a_patience")
        c = st.columns(4)
        ratio = c[0].slider("Prune while training to", 0.0, 0.95, 0.5, 0.05, key="a_ratio",
                            help="share of channels / heads / neurons removed by the end of the schedule")
        method = c[1].selectbox("Structured pruning", PRUNE_METHODS, index=PRUNE_METHODS.index("l2-structured"),
                                key="a_method")
        schedule = c[2].selectbox("Schedule", PRUNE_SCHEDULES, key="a_schedule",
                                  help="cubic: Zhu and Gupta's gradual pruning (fast at first); linear: even steps")
        mask = c[3].selectbox("Extra sparsity mask", MASK_MODES, key="a_mask",
                              help="unstructured: the target share of weights zeroed; 2:4: two of every four kept")
        c = st.columns(4)
        tolerance_pts = c[0].number_input("Guard: a step may cost (points of val. accuracy, 0 = off)", 0.0, 100.0,
                                          2.0, 0.5, key="a_tolerance")
        guard = c[1].selectbox("When a step costs more", GUARD_ACTIONS, key="a_guard",
                               help="rollback: undo the step and keep the ratio; slow: keep it and slow the schedule")
        qat = c[2].selectbox("Quantization-aware at", ["off", *QAT_BITS], key="a_qat",
                             format_func=lambda b: "off" if b == "off" else f"{b} bits")
        qat_granularity = c[3].selectbox("QAT granularity", GRANULARITIES, index=GRANULARITIES.index("per-channel"),
                                         key="a_qat_gran", disabled=qat == "off")
    try:
        settings = AdaptiveSettings(
            epochs=int(epochs), lr=float(lr), lr_policy=policy, patience=int(patience), target_ratio=float(ratio),
            prune_method=method, schedule=schedule, mask=mask,
            tolerance=(tolerance_pts / 100.0) if tolerance_pts > 0 else None, guard=guard,
            qat_bits=None if qat == "off" else int(qat), qat_granularity=qat_granularity)
    except GeminiError as exc:
        st.error(f"These adaptive settings cannot run: {exc}")
        return None, problem or str(exc)
    return settings.to_dict(), problem


scenario_name = choice
if not kind_for_scenario(choice).trains_baseline:  # its kind loads (or trains) the model itself: its section
    problem = for_scenario(choice).model_section(options)
elif DATA_KIND[choice] == "table":
    data_file_section(choice)
elif DATA_KIND[choice] == "model":
    source = st.text_input("Hugging Face model id or local model directory", key="m_hf_source",
                           placeholder="/models/my-bert  or  distilbert-base-uncased (needs the hub)").strip()
    if not source:
        problem = "give a model id or directory"
    else:
        try:  # a local model folder follows the typed-path rule (hub ids are names, not paths)
            check_model_source(source, "model directory")
        except GeminiError as exc:
            problem = str(exc)
            st.error(f"This path cannot be used: {exc}")
    scenario_name = f"{choice}:{source}"
    data_file_section(choice)
elif DATA_KIND[choice] == "images":
    path = st.text_input("Folder of class folders, or an .npz file (x, y arrays)", key="m_images_path").strip()
    if path:
        options["data"] = path
        try:
            check_typed_path(path, "image path")
        except GeminiError as exc:
            problem = str(exc)
            st.error(f"This path cannot be used: {exc}")
    else:
        problem = "give the image folder or .npz file"

# Train settings: defaults from the scenario; only changed values are passed (the default baseline is shared).
scenario = None
if problem is None:
    try:
        scenario = get_scenario(scenario_name, **options)
    except GeminiError as exc:
        problem = str(exc)
        st.error(f"This model cannot be set up: {exc}")
train = None
adaptive = None
MODES = {"standard": "standard: fixed settings",
         "adaptive": "adaptive: learning rate and structure adapt while training"}
trains = kind_for_scenario(choice).trains_baseline
mode = "standard" if not trains else st.radio(
    "Training", list(MODES), format_func=MODES.get, horizontal=True, key="m_mode",
    help="adaptive: validates every epoch, adapts the learning rate, prunes a little more where "
                     "validation allows (rolling back a step that costs too much), optionally trains against "
                     "the target bit width; the result is a baseline that sweeps and export take like any other")
if scenario is not None and not trains:
    st.caption(scenario.description)  # no baseline training: the model is loaded as it is
elif scenario is not None and mode == "adaptive":
    adaptive, problem = adaptive_form(scenario, choice, problem)
elif scenario is not None:
    defaults = scenario.default_train
    with st.expander("Baseline training settings"):
        c = st.columns(4)
        epochs = c[0].number_input("Epochs", 1, 1000, defaults.epochs, key=f"m_epochs_{choice}")
        batch = c[1].number_input("Batch size", 1, 4096, defaults.batch_size, key=f"m_batch_{choice}")
        lr = c[2].number_input("Learning rate", 1e-6, 1.0, float(defaults.lr), format="%.6f", key=f"m_lr_{choice}")
        max_steps = c[3].number_input("Stop after steps (0 = no limit)", 0, 10_000_000, defaults.max_steps or 0,
                                      key=f"m_steps_{choice}")
    chosen = dataclasses.replace(defaults, epochs=int(epochs), batch_size=int(batch), lr=float(lr),
                                 max_steps=int(max_steps) or None)
    train = None if chosen == defaults else dataclasses.asdict(chosen)
    st.caption(getattr(scenario, "description", ""))

job = current_job("train")
running = job is not None and job.running
sweep = current_job("sweep")
busy = sweep is not None and sweep.running


def use_model() -> None:
    set_model(scenario_name, options, train, adaptive)
    st.session_state.pop("baseline_info", None)


def train_now() -> None:
    use_model()
    submit(TrainJob(scenario_name, options, train, retrain=st.session_state.get("m_retrain", False),
                    adaptive=adaptive))


c = st.columns([1.2, 1.4, 0.9, 1, 2.5])
c[0].button("Use this model", key="m_use", on_click=use_model, disabled=scenario is None or problem is not None)
c[1].button("Train adaptively" if mode == "adaptive" else "Train / load baseline", key="m_train", type="primary",
            on_click=train_now, disabled=scenario is None or problem is not None or running or busy or not trains,
            help="loads the cached baseline when one exists for this data and these settings")
c[2].checkbox("Retrain", key="m_retrain", help="train again even if a cached baseline exists")
c[3].button("Cancel", key="m_cancel", on_click=lambda: job and job.cancel(), disabled=not running,
            help="stops training after the current step; a stopped training is not kept as the baseline")
if busy:
    c[4].caption("A sweep is running; training waits until it finishes (or is cancelled).")
show_job_error()
current = current_model()
st.markdown(f"Current model: **{current['scenario']}**"
            + (f" · data {current['options'].get('data')}" if current["options"].get("data") else "")
            + (" · custom training settings" if current.get("train") else "")
            + (" · adaptive training" if current.get("adaptive") else ""))


def adaptive_summary(events: list, summary: dict | None) -> None:
    """One line on what the adaptive training did so far (rollbacks, pruning, early stop)."""
    epochs = [e for e in events if e.get("event") == "epoch"]
    rollbacks = sum(1 for e in events if e.get("event") == "rollback")
    parts = []
    if epochs:
        last = epochs[-1]
        parts.append(f"epoch {last['epoch']}/{last['epochs']}: pruned {last['prune_ratio_now']:.0%} "
                     f"(schedule {last['scheduled_ratio']:.0%}), {last['params']:,} parameters, "
                     f"val. accuracy {last['val_accuracy'] * 100:.2f}%, learning rate {last['lr']:.2e}")
    if rollbacks:
        parts.append(f"{rollbacks} pruning step(s) rolled back by the guard")
    if any(e.get("event") == "early_stop" for e in events):
        parts.append("stopped early")
    if summary:
        parts.append(f"parameters {summary.get('params_before', 0):,} → {summary.get('params_after', 0):,}, "
                     f"MACs {summary.get('macs_before', 0):,} → {summary.get('macs_after', 0):,} (estimates)")
    if parts:
        st.caption(" · ".join(parts))


@st.fragment(run_every=views.POLL_SECONDS if running else None)
def training_view(polling: bool) -> None:
    job = current_job("train")
    if job is not None and not job_of_model(job):  # another model's training: its card is not this model's
        st.caption(f"The last training was of another model ({job.scenario_name}); its baseline is shown when "
                   "that model is the current one.")
        job = None
    if job is None:
        sweep = current_job("sweep")
        base = getattr(sweep, "baseline_info", None) if sweep is not None and job_of_model(sweep) else None
        accuracy = (base or {}).get("test_accuracy")
        if isinstance(accuracy, (int, float)):  # the sidebar shows it too: say where it came from, not "not yet"
            origin = ("shipped with gemini (checksum, recipe and accuracy verified)" if base.get("origin") == "shipped"
                      else "loaded from the cache" if base.get("cached") else "trained")
            ci = base.get("test_accuracy_ci95") or [None, None]
            interval = (f" (95% interval {ci[0] * 100:.1f}-{ci[1] * 100:.1f}%, n = {base.get('test_n')} test examples)"
                        if None not in ci else "")
            st.info(f"This model's baseline was loaded by the sweep: {origin}, test accuracy {accuracy * 100:.1f}%"
                    f"{interval}. Press **Train / load baseline** for its card and training curve.")
            return
        st.info("The baseline is trained (or loaded from its cache) when you press **Train / load baseline**, "
                "or automatically before a sweep.")
        return
    snap = job.snapshot()
    if snap["state"] in ("running", "failed"):
        views.job_status(snap)
    elif snap["state"] == "cancelled":
        st.warning(f"{snap['title']}: cancelled; a stopped training is not kept, the previous baseline stays")
    epochs = [e for e in snap["events"] if e.get("event") == "epoch"]
    cached = any(e.get("event") == "cached" for e in snap["events"])
    history = epochs or list(job.baseline_history or [])
    if getattr(job, "adaptive", None):
        if history or snap["state"] == "running":
            st.plotly_chart(fig_adaptive_training(history), key="m_adaptive_chart")
        adaptive_summary(snap["events"], getattr(job, "adaptive_summary", None))
    elif history or snap["state"] == "running":
        chosen = [e for e in snap["events"] if e.get("event") == "chosen"]  # the kept epoch, once training ends
        st.plotly_chart(fig_training(history + chosen if epochs else history), key="m_train_chart")
    if snap["state"] == "done" and snap["result"]:
        res = snap["result"]
        st.subheader("Baseline")
        if cached:
            st.caption("Loaded from the cache (trained earlier with the same data and settings).")
        views.baseline_card(res.get("reference"), res.get("baseline"))
        st.session_state["baseline_info"] = res.get("baseline")
    if polling and job.done:
        st.rerun()


training_view(running)

_form = shared_memory().setdefault("model_form", {})
_form.update({k: st.session_state.get(k) for k in FORM_KEYS if k in st.session_state and k != "m_data_path"})
if st.session_state.get("m_data_path"):
    _form["m_data_path"] = st.session_state["m_data_path"]
