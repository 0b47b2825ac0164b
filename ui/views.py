"""Widgets shared by several pages: page chrome and sidebar, job status, starting sweeps, baseline card.

The points of a sweep (live view, table, picker) are ``points_view.py``.
"""
from __future__ import annotations

import html
import time

import streamlit as st

from gemini_core.results.units import duration_text, size_text

from .compute_jobs import SweepJob
from .estimates import time_left, training_left
from .kinds import for_scenario
from .state import (
    ASSETS,
    current_job,
    current_model,
    device_summary,
    inject_css,
    model_label,
    quiet_engine_output,
    registry,
    submit,
)

POLL_SECONDS = 1.0


def _gb(n) -> str:
    return f"{n / 1024 ** 3:.0f} GiB"


# -- page chrome -------------------------------------------------------------------------------------
def page_chrome() -> None:
    """CSS, logo and the sidebar (device, torch, current model, running job). Called once per run by app.py."""
    st.session_state["errors_shown"] = []  # show_error_once: each message once per run
    quiet_engine_output()
    inject_css()
    st.logo(str(ASSETS / "logo.svg"), icon_image=str(ASSETS / "icon.svg"), size="large")
    render_sidebar()


def render_sidebar() -> None:
    side = st.sidebar
    try:
        info = device_summary()
    except Exception as exc:  # never let the sidebar take a page down
        side.error(f"could not read the device: {exc}")
        info = {}
    if info.get("device_type") == "cuda":
        mem = info.get("gpu_memory_bytes")
        device = f"GPU {info.get('gpu_name', '?')}" + (f" · {_gb(mem)}" if mem else "")
    else:
        threads = info.get("compute_threads", "?")
        device = (f"CPU {info.get('cpu', '?')} · {info.get('cores', '?')} cores · jobs use "
                  f"{threads} torch thread{'' if threads == 1 else 's'}")
    model = current_model()
    lines = [f"<b>Device</b><br>{html.escape(device)}", f"<b>torch</b> {html.escape(str(info.get('torch', '?')))}",
             f"<b>Current model</b><br>{html.escape(str(model_label(model)))}"]
    base = st.session_state.get("baseline_info")
    if not base:  # or from this session's latest job (a sweep trains / loads the baseline too)
        for kind in ("sweep", "train"):
            job = current_job(kind)
            if job is not None and getattr(job, "baseline_info", None):
                base = job.baseline_info
                break
    accuracy = (base or {}).get("test_accuracy")
    if base and base.get("scenario") == model["scenario"] and isinstance(accuracy, (int, float)):
        lines.append(f"baseline test accuracy {accuracy * 100:.1f}%")  # a model measured otherwise has none
    side.markdown("<div class='gemini-side'>" + "<br>".join(lines) + "</div>", unsafe_allow_html=True)
    with side:
        _sidebar_jobs(bool(registry().running()))


def _sidebar_jobs(running: bool) -> None:
    """Running jobs in the sidebar, with the model each belongs to; polled while one runs so it keeps up
    with the page (and a reloaded tab sees a job started in another)."""

    @st.fragment(run_every=POLL_SECONDS if running else None)
    def jobs(polling: bool) -> None:
        active = registry().running()
        for job in active:
            scenario = getattr(job, "scenario_name", None)
            st.caption(f"⏳ {job.title}" + (f" · model **{scenario}**" if scenario else "") + f": {job.message}")
        if polling and not active:
            st.rerun()  # the job ended: redraw the whole page once

    jobs(running)


# -- job status --------------------------------------------------------------------------------------
def job_failure(snap: dict) -> None:
    """A failed job: its message, and the traceback (only for bugs) folded away."""
    st.error(f"{snap['title']} failed: {snap['error']}")
    if snap.get("error_detail"):
        with st.expander("details (for a bug report)"):
            st.code(snap["error_detail"])


def task_status(snap: dict) -> bool:
    """Progress or failure of a one-shot job (export, check); True when it is done with a result."""
    if snap["state"] == "running":
        st.progress(0.5, text=f"{snap['title']}: {snap['message']} · {snap['elapsed']:.0f} s")
    elif snap["state"] == "failed":
        job_failure(snap)
    return snap["state"] == "done" and bool(snap["result"])


def job_status(snap: dict) -> None:
    """Progress bar and one line of status for a job snapshot."""
    state, total, done = snap["state"], snap["total"] or 0, len(snap["records"])
    steps = [e for e in snap["events"] if e.get("event") == "step"]
    if state == "running" and not snap["records"] and steps:
        st.progress(min(1.0, steps[-1]["step"] / max(1, steps[-1]["total_steps"])),
                    text=snap["message"] + _training_eta(snap, steps[-1]))
    elif state == "running":
        left = ""
        # this job's pace since its first point (the start-up before it says nothing of the pace)
        seconds, why = time_left(snap, snap.get("now") or time.time())
        if seconds is not None:
            left = f" · about {seconds:.0f} s left (estimate{'; ' + why if why else ''})"
        elif total and done < 2:
            left = " · time left known once two points are measured"
        if not done and snap.get("stage_seconds", 0) >= 5:  # a long stage before the first point: its own clock
            left += f" · this step {snap['stage_seconds']:.0f} s so far"
        st.progress(min(1.0, done / total) if total else 0.0,
                    text=f"{snap['message']} · {snap['elapsed']:.0f} s{left}")
    elif state == "done":
        reused = sum(1 for r in snap["records"] if r.get("reused"))
        if done and reused == done:  # nothing was measured: say so, and how to measure again
            st.info(f"{snap['title']}: all {done} points were already measured with this model and these settings "
                    "and were reused, not measured again (History has the run). Tick **Measure again** on the Sweep "
                    "page to measure them anew.")
        else:
            st.success(f"{snap['title']}: finished, {done} points in {snap['elapsed']:.1f} s"
                       + (f" ({reused} of them reused from earlier measurements)" if reused else ""))
    elif state == "cancelled":
        st.warning(f"{snap['title']}: cancelled after {done} points; the finished points are saved")
    elif state == "failed":
        job_failure(snap)
    failed = [r for r in snap["records"] if r.get("status") == "failed"]
    if failed:
        st.warning(f"{len(failed)} point(s) failed and were skipped: "
                   + "; ".join(f"{r.get('label')}: {r.get('error')}" for r in failed[:3]))


def _training_eta(snap: dict, last: dict) -> str:
    step, total_steps = last["step"], max(1, last["total_steps"])
    span = training_left(snap["events"], snap["elapsed"])
    if span is None or not 0 < step < total_steps:
        return ""
    least, most, why = span
    if why and least < most:
        return f" · {least:.0f}-{most:.0f} s left (estimate; {why})"
    # the message already names the step ("epoch 2, step 77/800"): only the time left is added
    return f" · about {most:.0f} s left (estimate)"


# -- starting sweeps ---------------------------------------------------------------------------------
def start_sweep(spec, run_name: str | None = None, title: str | None = None) -> None:
    model = current_model()
    executor = st.session_state.get("sw_executor", "local")
    if title is None and run_name:  # the banners name the run the user named
        title = f"sweep “{run_name}” of {model['scenario']} ({spec.n_points()} points)"
    ray_address = (st.session_state.get("sw_ray_address") or "").strip() or None if executor == "ray" else None
    submit(SweepJob(model["scenario"], spec, options=model["options"], train=model["train"], run_name=run_name,
                    title=title, adaptive=model.get("adaptive"), executor=executor, ray_address=ray_address,
                    force=bool(st.session_state.get("sw_force"))))


def start_demo() -> None:
    """on_click of "Run demo sweep": the current model's kind's demo grid (digits unless changed)."""
    scenario = current_model()["scenario"]
    spec = for_scenario(scenario).demo_spec()
    start_sweep(spec, run_name=f"demo: {scenario}", title=f"demo sweep of {scenario} ({spec.n_points()} points)")


def cancel_sweep() -> None:
    job = current_job("sweep")
    if job is not None:
        job.cancel()


# -- baseline card -----------------------------------------------------------------------------------
def baseline_card(reference: dict | None, baseline: dict | None) -> None:
    """Accuracy, latency, size, params and MACs (estimate) of the baseline's dense fp32 point."""
    if not reference:
        return
    c = st.columns(5)
    acc = reference.get("accuracy")
    ci, n = reference.get("accuracy_ci95"), reference.get("test_n")
    c[0].metric("Test accuracy", f"{acc * 100:.2f}%" if acc is not None else "–",
                help=f"95% Wilson interval {ci[0] * 100:.1f}-{ci[1] * 100:.1f}% on {n} test examples" if ci and n
                else None)
    c[1].metric(f"Latency p50 (batch {reference.get('batch_size')})", duration_text(reference.get("latency_ms_p50")))
    c[2].metric("Checkpoint size", size_text(reference.get("size_bytes")))
    c[3].metric("Parameters", f"{reference.get('params', 0):,}")
    c[4].metric("MACs (estimate)", f"{reference.get('macs', 0):,}")
    if baseline:
        st.caption(f"baseline {baseline.get('baseline_key')} · {baseline.get('train')} train / "
                   f"{baseline.get('val')} val / {baseline.get('test')} test examples · "
                   f"classes: {', '.join(map(str, baseline.get('classes', [])[:12]))}"
                   + (" · shipped with gemini (checksum, recipe and accuracy verified)"
                      if baseline.get("origin") == "shipped"
                      else " · loaded from cache" if baseline.get("cached") else " · trained now")
                   + f" · measured on {reference.get('device')}"
                   + (f" · accuracy 95% interval {ci[0] * 100:.1f}-{ci[1] * 100:.1f}% (n={n})" if ci and n else "")
                   + (f" · kept epoch {baseline['chosen_epoch']['epoch']} of {baseline['chosen_epoch']['epochs_run']}"
                      f" ({baseline['chosen_epoch']['stopped']})" if baseline.get("chosen_epoch") else ""))
