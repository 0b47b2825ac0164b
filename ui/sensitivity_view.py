"""The Sensitivity page's parts: starting and showing the analysis job, the allocator form and table.

Calls gemini_core only (no torch here); the job runs in ui/compute_jobs.py like the other jobs.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from gemini_core.charts import sensitivity as splots
from gemini_core.errors import GeminiError
from gemini_core.results.store import Store

from . import views
from .compute_jobs import SensitivityJob
from .kinds import for_scenario
from .state import current_job, current_model, job_of_model, show_error_once, submit

POLL_SECONDS = 1.0
HEATMAP_KEYS = {"pruning": "prune", "quantization": "quant"}  # chart keys (stable across reruns)
NA = "–"  # a cell that does not apply (bits of a pruning group, ratio of a layer)


def _cell(value, fmt: str) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return NA
    return NA if number != number else fmt.format(number)


def start_analysis(params) -> None:
    model = current_model()
    submit(SensitivityJob(model["scenario"], params, options=model["options"], train=model["train"],
                          adaptive=model.get("adaptive")))


def cancel_analysis() -> None:
    job = current_job("sensitivity")
    if job is not None:
        job.cancel()


def latest_stored_profile(scenario: str) -> dict | None:
    """The newest stored analysis of this scenario (the page shows it when no job ran in this process)."""

    try:
        found = [a for a in Store().analyses() if a["scenario"] == scenario]
    except GeminiError as exc:
        show_error_once(str(exc), "The run history cannot be read: ")
        return None
    return found[0]["result"] if found else None


def show_profile(profile: dict, key: str) -> None:
    """The profile's caption (its kind's) and the figures its kind's analysis fills."""
    kind_ui = for_scenario(profile["scenario"])
    kind_ui.profile_caption(profile)
    figures = kind_ui.PROFILE_FIGURES
    heatmaps = [name for name in ("pruning", "quantization") if name in figures]
    columns = st.columns(len(heatmaps)) if len(heatmaps) > 1 else [st.container()]
    for column, name in zip(columns, heatmaps):
        with column:
            st.plotly_chart(splots.fig_heatmap(profile, name), key=f"{key}_{HEATMAP_KEYS[name]}",
                            config={"displaylogo": False})
    if "bars" in figures:
        st.plotly_chart(splots.fig_layer_bars(profile), key=f"{key}_bars", config={"displaylogo": False})
    lat = profile.get("latency")
    if lat:
        st.caption(f"Latency: {lat['total_ms_p50']:.2f} ms per batch of {lat['batch_size']} in fp32, "
                   f"{lat['other_ms_p50']:.2f} ms outside the listed layers · {lat['method']}.")


def _model_analysis(say: bool = False):
    """This session's analysis job when it profiles the current model; another model's is named, not shown."""
    job = current_job("sensitivity")
    if job is not None and not job_of_model(job):
        if say:
            state = "is running" if job.running else "ran last"
            st.caption(f"An analysis of another model ({job.scenario_name}) {state}; its profile is shown when "
                       "that model is the current one.")
        return None
    return job


def live_analysis() -> None:
    """The current analysis job, redrawn every second while it runs; else the newest stored analysis."""
    job = _model_analysis()
    running = job is not None and job.running

    @st.fragment(run_every=POLL_SECONDS if running else None)
    def live(polling: bool) -> None:
        job = _model_analysis(say=True)
        if job is None:
            profile = latest_stored_profile(current_model()["scenario"])
            if profile is None:
                st.info("No analysis yet for this model: press **Run analysis**.")
                return
            st.session_state["sn_profile"] = profile
            show_profile(profile, "stored")
            return
        snap = job.snapshot()
        state, total = snap["state"], snap["total"] or 0
        done = len([e for e in snap["events"] if e.get("event") == "step" and "phase" in e])
        if state == "running":
            st.progress(min(1.0, done / total) if total else 0.0, text=f"{snap['message']} · {snap['elapsed']:.0f} s")
        elif state == "done":
            st.success(f"{snap['title']}: {snap['message']}")
        elif state == "cancelled":
            st.warning(f"{snap['title']}: cancelled after {done} evaluations; what was measured is kept")
        elif state == "failed":
            views.job_failure(snap)
        if snap.get("profile"):
            st.session_state["sn_profile"] = snap["profile"]
            show_profile(snap["profile"], "live")
        if polling and job.done:
            st.rerun()

    live(running)


# -- allocator ---------------------------------------------------------------------------------------
def propose(profile: dict) -> None:
    """on_click of 'Propose allocation': the allocator's choice goes into the editable table."""
    from gemini_core.workflows.allocator import allocate

    s = st.session_state
    try:
        allocation = allocate(profile, s.sn_objective, max_accuracy_drop_points=float(s.sn_max_drop),
                              target_speedup=float(s.sn_speedup) if s.sn_objective == "speedup" else None,
                              bits_options=tuple(s.sn_alloc_bits) or None, allow_pruning=bool(s.sn_alloc_prune))
    except GeminiError as exc:
        s["sn_alloc_error"] = str(exc)
        s.pop("sn_alloc", None)
        return
    s.pop("sn_alloc_error", None)
    s["sn_alloc"] = {"rows": allocation.rows, "notes": allocation.notes, "analysis_id": profile["analysis_id"]}
    s.pop("sn_alloc_table", None)  # a fresh table, not the old edits


def allocation_editor(profile: dict) -> None:
    """The chosen allocation as an editable table, its predicted figures, and the button to measure it."""
    from gemini_core.workflows.allocator import allocation_config, comparison_spec, predict, rows_to_choice

    s = st.session_state
    if s.get("sn_alloc_error"):
        st.error(s["sn_alloc_error"])
    alloc = s.get("sn_alloc")
    if not alloc or alloc.get("analysis_id") != profile["analysis_id"]:
        return
    bits_choices = sorted({32, *profile["params"]["bits"]}, reverse=True)
    ratio_choices = [0.0, *profile["params"]["ratios"]]
    frame = pd.DataFrame(alloc["rows"])
    for col in ("bits", "prune_ratio"):
        if col not in frame.columns:
            frame[col] = None
    frame = frame[["kind", "name", "bits", "prune_ratio", "predicted_drop_points"]]
    # A layer has bits, a group has a ratio: the other cell reads "–" (not "None") and cannot be chosen.
    frame["bits"] = [_cell(v, "{:.0f}") for v in frame["bits"]]
    frame["prune_ratio"] = [_cell(v, "{:g}") for v in frame["prune_ratio"]]
    bits_choices = [NA, *[str(b) for b in bits_choices]]
    ratio_choices = [NA, *[f"{r:g}" for r in ratio_choices]]
    edited = st.data_editor(
        frame, key="sn_alloc_table", hide_index=True, width="stretch", disabled=["kind", "name",
                                                                                          "predicted_drop_points"],
        column_config={
            "bits": st.column_config.SelectboxColumn("bits (layer)", options=bits_choices),
            "prune_ratio": st.column_config.SelectboxColumn("prune ratio (group)", options=ratio_choices),
            "predicted_drop_points": st.column_config.NumberColumn("predicted drop (points)", format="%.2f",
                                                                   help="measured for this layer alone; a prediction"),
        })
    for note in alloc.get("notes") or []:
        st.warning(note)
    try:
        rows = [{**r, "bits": None if r["bits"] in (NA, None) else int(r["bits"]),
                 "prune_ratio": None if r["prune_ratio"] in (NA, None) else float(r["prune_ratio"])}
                for r in edited.to_dict("records")]
        bits, ratios = rows_to_choice(profile, rows)
        config = allocation_config(profile, bits, ratios, finetune_steps=int(s.sn_alloc_ft))
        pred = predict(profile, bits, ratios)
    except GeminiError as exc:
        st.error(f"This allocation cannot be used: {exc}")
        return
    line = (f"**Predicted** (from the profile, layers assumed independent; measure to know): accuracy drop "
            f"{pred['predicted_accuracy_drop_points']:.2f} points, layer weights "
            f"{pred['predicted_weight_bytes'] / 1024:.1f} KB of {pred['fp32_weight_bytes'] / 1024:.1f} KB")
    if pred.get("predicted_speedup"):
        line += f", speed-up {pred['predicted_speedup']:.2f}x"
    st.markdown(line)
    st.caption(f"Config: `{config.label()}`")
    uniform_bits = tuple(sorted({32, 8, *[b for b in bits.values() if b < 32]}, reverse=True))
    prunes = any(r > 0 for r in ratios.values())
    spec = comparison_spec(config, prune_method=profile["params"]["prune_method"],
                           granularity=profile["params"]["granularity"],
                           compare_ratios=(0.0, 0.5) if prunes else (0.0,), compare_bits=uniform_bits)
    s["sn_alloc_spec"] = spec
    st.caption(f"Measuring runs a sweep of {spec.n_points()} points: this allocation and uniform comparators "
               f"({', '.join(map(str, uniform_bits))} bits{', 0 and 50% pruning' if prunes else ''}). "
               + (f"Every point, the quantized-only ones included, gets the allocation's {config.finetune_steps} "
                  "fine-tune steps (same rate and data; fine-tuned in float, then quantized). "
                  if config.finetune_steps else "No point is fine-tuned (0 steps). ")
               + "It appears on the Sweep page and in History like any sweep.")


def measure_allocation() -> None:
    """on_click of 'Measure allocation vs uniform': the allocation and its comparators as one sweep."""
    from .views import start_sweep

    spec = st.session_state.get("sn_alloc_spec")
    if spec is not None:
        start_sweep(spec, run_name=f"{current_model()['scenario']}: allocation vs uniform",
                    title=f"allocation vs uniform ({spec.n_points()} points)")
