"""Streamlit-side state shared by the pages: the job registry, the current model, the chosen point.

Only the page scripts (main thread) call into here; the job threads never do.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path

import streamlit as st

from gemini_core.errors import GeminiError
from gemini_core.fsio import explain_os_error, write_file_atomic
from gemini_core.paths import check_model_source, check_typed_path, home_dir, typed_path_roots  # noqa: F401
from gemini_core.results.store import Store

from . import saved_state
from .jobs import Job, JobBusy, JobRegistry

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
DEFAULT_MODEL = {"scenario": "digits", "options": {}, "train": None, "adaptive": None}


def use_router() -> None:
    """Make sure app.py's router (st.navigation + shared sidebar) runs this page.

    Streamlit keeps a legacy mode for apps with a ``pages/`` folder: when the first request a
    fresh server gets is a deep link (``/Sweep``), it runs that page file directly, without
    app.py, so the sidebar and the page names are missing until something reruns app.py. Each
    page calls this first: in that legacy mode it switches Streamlit to the router and reruns,
    which lands on the same page (both modes derive the same page id from the file name).
    Uses Streamlit's ``PagesManager`` flag (an internal; checked by the AppTest and browser tests).
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a Streamlit without it has no legacy mode to leave
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


@st.cache_resource(show_spinner=False)
def registry() -> JobRegistry:
    """One registry per server process: every session (and a reloaded browser tab) sees the same jobs."""
    return JobRegistry()


# -- jobs ----------------------------------------------------------------------------------------
STORE_JOBS = ("sweep", "train", "sensitivity")  # jobs that train a baseline and write to the run store


def submit(job: Job, kind_key: str | None = None) -> Job | None:
    """Start ``job``; on a busy lane or a damaged store, store one message for the page to show and return None.

    A job that trains and writes to the run store is not started at all when the store is damaged, unreadable
    or cannot be written (a read-only home): the message says so before any training (the job checks again,
    for a store damaged later).
    """
    try:
        if job.kind in STORE_JOBS:
            Store().check().check_writable()
        registry().submit(job)
    except (JobBusy, GeminiError) as exc:
        st.session_state["job_error"] = str(exc)
        return None
    st.session_state[f"{kind_key or job.kind}_job_id"] = job.id
    st.session_state.pop("job_error", None)
    return job


def current_job(kind: str) -> Job | None:
    """This session's job of ``kind``; after a browser reload (new session), the latest one of the process."""
    reg = registry()
    job = reg.get(st.session_state.get(f"{kind}_job_id"))
    if job is None:
        job = reg.latest(kind)
        if job is not None:  # re-attach
            st.session_state[f"{kind}_job_id"] = job.id
    return job


def show_job_error() -> None:
    msg = st.session_state.pop("job_error", None)
    if msg:
        show_error_once(msg)


def show_error_once(message: str, prefix: str = "") -> None:
    """``st.error`` unless this page run already showed ``message`` (a damaged store met by the start button
    and by the page's own history view is one fact, said once). ``page_chrome`` resets it every run."""
    shown = st.session_state.setdefault("errors_shown", [])
    if message not in shown:
        shown.append(message)
        st.error(prefix + message)


# -- current model -------------------------------------------------------------------------------
def current_model() -> dict:
    model = st.session_state.get("model")
    if not model:  # a new tab or a reload: the model last chosen on this server, else the default
        model = dict(shared_memory().get("model") or DEFAULT_MODEL)
        st.session_state["model"] = model
    shared_memory()["model"] = dict(model)  # a reloaded tab finds it again
    return model


def set_model(scenario: str, options: dict | None = None, train: dict | None = None,
              adaptive: dict | None = None) -> dict:
    """The model the pages work on; ``adaptive`` (AdaptiveSettings fields) for an adaptively trained one."""
    model = {"scenario": scenario, "options": dict(options or {}), "train": dict(train) if train else None,
             "adaptive": dict(adaptive) if adaptive else None}
    st.session_state["model"] = model
    return model


def run_of_model(run: dict, model: dict | None = None) -> bool:
    """Whether a stored run measured ``model`` (default: the current one): its scenario and, where the run kept
    them, the same data file. Runs of other models are reached through History, labelled as such."""
    model = model or current_model()
    if run.get("scenario") != model["scenario"]:
        return False
    stored = (run.get("baseline") or {}).get("scenario_options")
    if not isinstance(stored, dict):  # a run that did not keep its options: its scenario is all we know
        return True
    return _identity(stored) == _identity(model["options"])


# The scenario options that say which model and data a run measured: the data file, and the weights where a
# scenario loads them (an LLM's ``model``: the built-in one or a local folder). Missing is the scenario default.
IDENTITY_OPTIONS = ("data", "model")


def _identity(options: dict) -> tuple[str, ...]:
    return tuple(str(options.get(name) or "").strip() for name in IDENTITY_OPTIONS)


def job_of_model(job, model: dict | None = None) -> bool:
    """Whether a sweep or training job works on ``model`` (default: the current one)."""
    model = model or current_model()
    options = getattr(job, "options", None) or {}
    return (getattr(job, "scenario_name", None) == model["scenario"]
            and _identity(options) == _identity(model["options"]))


def model_runs(runs: list[dict], model: dict | None = None) -> list[dict]:
    """The runs (newest first, as given) that measured the current model."""
    model = model or current_model()
    return [r for r in runs if run_of_model(r, model)]


def run_label(run: dict, model: dict | None = None) -> str:
    """'name · scenario · 33 points · id', marked when the run measured another model than the current one."""
    label = f"{run['name']} · {run['scenario']} · {run['points_ok']} points · {run['run_id']}"
    return label if run_of_model(run, model) else f"{label} · another model"


def model_label(model: dict) -> str:
    label = model["scenario"]
    adaptive = model.get("adaptive")
    if adaptive:
        label += f" · adaptive, {adaptive.get('target_ratio', 0):.0%} pruned while training"
    for name in IDENTITY_OPTIONS:  # which weights (a local folder) and which data file
        value = model["options"].get(name)
        if value:
            label += f" · {Path(str(value).removeprefix('hf:')).name}"
    return label


# -- chosen point (Sweep -> Export / Report) ----------------------------------------------------------
@st.cache_resource(show_spinner=False)
def shared_memory() -> dict:
    """Process-wide memory of the last choices, so a reloaded tab (a new session) finds them again; loaded
    from the home folder's ui_state.json (checked as untrusted input), so a restarted server does too."""
    memory, problems = saved_state.load(check_typed_path)
    memory["_state_text"] = saved_state.dump(memory) if memory else None
    memory["_state_problems"] = problems
    return memory


_SAVE_LOCK = threading.Lock()


def persist_state() -> None:
    """Write the choices to ui_state.json if they changed (app.py, after every page run). Sessions and tabs
    share one state: the last writer wins. A read-only or full home keeps them in this process only."""
    memory = shared_memory()
    with _SAVE_LOCK:
        try:
            memory["_state_text"] = saved_state.save(memory, memory.get("_state_text"))
        except OSError:
            pass  # the page already works from the process memory; a read-only home is reported elsewhere


def show_state_problems() -> None:
    """The saved state's problems (a damaged or foreign ui_state.json), once per session, one line."""
    problems = shared_memory().get("_state_problems") or []
    if problems and not st.session_state.get("state_problems_shown"):
        st.session_state["state_problems_shown"] = True
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        st.warning(problems[0] + more)


def runs_with_points_or_stop(what: str):
    """(store, runs that have measured points); otherwise a message in the page and st.stop()."""

    try:
        store = Store()
        runs = [r for r in store.runs() if r["points_ok"]]
    except GeminiError as exc:
        st.error(f"The run history cannot be read: {exc}")
        st.stop()
    notice = store.damaged_rows_notice()
    if notice:  # the other runs read as usual; the damaged ones are named, not silently missing
        st.warning(notice)
    if not runs:
        st.info(f"Nothing to {what} yet: run a sweep first (Overview or Sweep page).")
        st.stop()
    return store, runs


def select_point(point_id, source: str = "sweep") -> None:
    """``source`` "chart": a click to inspect a point (its record panel), not a choice to export or report on."""
    if point_id is None:
        return
    st.session_state["selected_point_id"] = int(point_id)
    st.session_state["selected_point_source"] = source
    shared_memory()["selected_point_id"] = int(point_id)
    shared_memory()["selected_point_source"] = source


def take_point_from_link(reset: tuple[str, ...] = ()) -> None:
    """The "Export point #N" and "Report on point #N" links carry the point in the address (?point=N): following
    one is a choice to export or report on N, even when N was only clicked in a chart to read it. ``reset``: the
    page's own earlier picks, dropped so that the page opens on N."""
    text = st.query_params.get("point")
    if text is None:
        return
    del st.query_params["point"]  # taken once: a later reload opens on the recommendation or the choice kept
    if str(text).isdigit():
        select_point(int(text), source="link")
        for key in reset:
            st.session_state.pop(key, None)


def chosen_point_id() -> int | None:
    """The point chosen to export and report on: the selected one unless it was only clicked in a chart."""
    pid = selected_point_id()
    source = st.session_state.get("selected_point_source", shared_memory().get("selected_point_source"))
    return None if source == "chart" else pid


def selected_point_id() -> int | None:
    pid = st.session_state.get("selected_point_id")
    if pid is None:
        pid = shared_memory().get("selected_point_id")  # after a browser reload
        if pid is not None:
            st.session_state["selected_point_id"] = pid
    return int(pid) if pid is not None else None


# -- engine pieces that may not be there yet ----------------------------------------------------------
_QUIETED: list[bool] = []  # once per process (not a cache_resource: the tests clear those)


def quiet_engine_output() -> None:
    """Once per server process, on the script thread that imports torch: bind the profiler to this thread (a
    job's first memory measurement then prints no "External init callback" error) and keep its start/stop
    lines out of the server log. Only under a real server: AppTest's process keeps its own stderr."""
    from streamlit import runtime

    if _QUIETED or not runtime.exists():
        return
    _QUIETED.append(True)
    from gemini_core.measure import warm_profiler
    from gemini_core.native_noise import filter_native_noise_for_process

    filter_native_noise_for_process()
    warm_profiler()


@st.cache_resource(show_spinner=False)
def device_summary() -> dict:
    from gemini_core.device import compute_threads_for_app, device_info

    return {**device_info(), "compute_threads": compute_threads_for_app()}


@st.cache_resource(show_spinner=False)
def png_ready() -> bool:
    from gemini_core.charts.images import start_png_server

    return start_png_server()


def save_upload(upload, default_name: str = "data.csv") -> str:
    """Write an uploaded file under <home>/uploads, named by its full SHA-256, and return its path.

    The bytes go to a temporary sibling that is renamed only once complete (a full disk leaves no
    half file under the final name), and an existing file is reused only when its bytes hash to its
    name. A name without an extension keeps none: the readers recognise data by content.
    """
    import hashlib

    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    folder = home_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest[:16]}-{sanitise_filename(upload.name, default_name)}"
    if path.is_file():
        with open(path, "rb") as handle:
            if hashlib.sha256(handle.read()).hexdigest() == digest:
                return str(path)
    try:
        write_file_atomic(path, data)
    except OSError as exc:
        raise GeminiError(explain_os_error(exc, f"saving the upload {upload.name!r}")
                          or f"could not save the upload: {exc.strerror or exc}") from None
    return str(path)


def sanitise_filename(name: str, default: str = "upload") -> str:
    """A safe file name: no folders, no leading dots, only [A-Za-z0-9._-], at most 80 chars."""
    base = Path(str(name).replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip("._")[:80]
    return base or default


def inject_css() -> None:
    css = (ASSETS / "style.css").read_text(encoding="utf-8")
    st.markdown(f"<style>{css}</style>", unsafe_allow_html=True)
