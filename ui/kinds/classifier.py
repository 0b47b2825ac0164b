"""The classifier's parts of the dashboard: its grid form and demo on the Sweep page, its recipe form mapping,
its sensitivity form and profile, its point figures and reload check on the Export page."""
from __future__ import annotations

import streamlit as st

from gemini_core.config import BITS, EXECUTIONS, GRANULARITIES, MAX_PRUNE_RATIO, PRUNE_METHODS, STRUCTURED_METHODS
from gemini_core.errors import ConfigError, GeminiError
from gemini_core.kinds.classifier.sensitivity import AnalysisParams
from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.results.pareto import finite
from gemini_core.results.units import duration_text, size_text
from ui.estimates import estimate_range, format_range
from ui.state import shared_memory
from ui.sweep_plan import DEMO_GRID, demo_spec

RAY_TASK = "one task per pruning setting"
PROFILE_FIGURES = ("pruning", "quantization", "bars")  # the heatmaps and the per-layer bars
RATIOS = [0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, MAX_PRUNE_RATIO]
FINETUNE = [0, 20, 60, 100, 200, 500, 1000]
DEFAULTS = {"sw_methods": ["l1-structured"], "sw_ratios": [0.0, 0.5], "sw_bits": [32, 8],
            "sw_gran": ["per-channel"], "sw_exec": ["dense"], "sw_ft": [60], "sw_batch": 32}
# the grid form's keys -> SweepSpec fields (recipes and History's "Re-run these settings" fill them)
FORM = {"sw_methods": "prune_methods", "sw_ratios": "prune_ratios", "sw_bits": "bits", "sw_gran": "granularities",
        "sw_exec": "executions", "sw_ft": "finetune_steps", "sw_batch": "batch_size"}

__all__ = ["demo_spec"]


# -- the Sweep page ------------------------------------------------------------------------------------
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


def use_demo_grid() -> None:
    st.session_state.update(sw_methods=list(DEMO_GRID["prune_methods"]), sw_ratios=list(DEMO_GRID["prune_ratios"]),
                            sw_bits=list(DEMO_GRID["bits"]), sw_gran=list(DEMO_GRID["granularities"]),
                            sw_exec=list(DEMO_GRID["executions"]), sw_ft=list(DEMO_GRID["finetune_steps"]),
                            sw_batch=DEMO_GRID["batch_size"])


def demo_help() -> str:
    return (f"the demo grid ({demo_spec().n_points()} points): l1-structured pruning 0/25/50/75% (60 fine-tune "
            "steps) x 32/8/4/2-bit x dense/sparse kernels; trains the baseline first if it is not cached")


def demo_caption(model: dict) -> str:
    spec = demo_spec()
    from gemini_core.checkpoint.shipped import ships_default

    shipped = not model.get("adaptive") and ships_default(model["scenario"], model.get("train"))
    low, high, source = estimate_range(spec, model["scenario"], baseline_cached=shipped, start=True)
    baseline = ("its baseline ships with gemini (verified on load, no training)" if shipped
                else "including training the baseline if it is not cached yet")
    return (f"Demo grid: {spec.n_points()} points: pruning ratios 0, 0.25, 0.5, 0.75 × bit widths 32, 8, 4, 2 "
            f"× dense and sparse execution on {model['scenario']}. About {format_range(low, high)} from the click, "
            f"{baseline} (estimate from {source}).")


def _add_ratios() -> None:
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


def sweep_form() -> tuple[SweepSpec | None, str | None]:
    """The classifier grid form (remembered across reloads of this server); (spec, None) or (None, the problem)."""
    remembered = shared_memory().get("sweep_form") or {}  # a reload / new tab: the last form of this server
    for k, v in DEFAULTS.items():
        st.session_state.setdefault(k, remembered.get(k, v))
    if remembered.get("sw_name"):
        st.session_state.setdefault("sw_name", remembered["sw_name"])
    st.session_state["sw_ratio_choices"] = sorted(_valid_ratios(RATIOS) | _valid_ratios(
        st.session_state.get("sw_ratio_choices")) | _valid_ratios(st.session_state.sw_ratios))
    c = st.columns(3)
    c[0].multiselect("Prune methods", PRUNE_METHODS, key="sw_methods",
                     help="structured methods remove whole channels; unstructured zero single weights; "
                          "2:4 keeps 2 of every 4")
    c[1].multiselect("Prune ratios", st.session_state.sw_ratio_choices, key="sw_ratios",
                     help="share removed; 0 keeps the model unpruned; type others below")
    c[1].text_input("Other ratios (comma separated, Enter adds them)", key="sw_custom_ratios", on_change=_add_ratios,
                    placeholder=f"e.g. 0.35, 0.65 (0 to {MAX_PRUNE_RATIO:g})")
    if st.session_state.get("sw_ratio_error"):
        c[1].error(st.session_state["sw_ratio_error"])
    c[2].multiselect("Fine-tune steps after pruning", FINETUNE, key="sw_ft")
    c = st.columns(4)
    c[0].multiselect("Bit widths", BITS, key="sw_bits", help="32 = float; 16 = half; 8 and below = integer codes")
    c[1].multiselect("Granularity (8 bits and below)", GRANULARITIES, key="sw_gran")
    c[2].multiselect("Execution", EXECUTIONS, key="sw_exec", help="dense kernels, or sparse kernels for pruned weights")
    c[3].number_input("Batch size (latency, memory)", min_value=1, max_value=4096, step=1, key="sw_batch")
    shared_memory()["sweep_form"] = {k: st.session_state.get(k) for k in [*DEFAULTS, "sw_name"]}
    s = st.session_state
    try:
        return SweepSpec(prune_methods=tuple(s.sw_methods), prune_ratios=tuple(s.sw_ratios), bits=tuple(s.sw_bits),
                         granularities=tuple(s.sw_gran), executions=tuple(s.sw_exec),
                         finetune_steps=tuple(s.sw_ft), batch_size=int(s.sw_batch)), None
    except GeminiError as exc:
        return None, str(exc)


def plan_text(spec: SweepSpec, model: dict) -> str:
    low, high, source = estimate_range(spec, model["scenario"])
    st.session_state["sweep_estimate_s"] = high
    return (f"**{spec.n_points()} points** ({len(spec.prune_settings())} pruning settings; the dense fp32 "
            f"reference is always included) · about **{format_range(low, high)}** (estimate from {source})")


# -- recipes (the Sweep form <-> a file, and a stored run's settings back into the form) ---------------------
def spec_from_form(state) -> dict:
    return {field: (list(state.get(key) or []) if field != "batch_size" else int(state.get(key) or 32))
            for key, field in FORM.items()}


def form_values(spec: dict) -> dict:
    """A stored spec -> the form's session values, validated by SweepSpec."""
    unknown = sorted(set(spec) - set(FORM.values()) - {"recoveries", "allocations", "kind"})
    if unknown:
        raise ConfigError(f"unknown sweep setting(s): {', '.join(unknown)}")
    fields = {f: spec[f] for f in FORM.values() if f in spec}
    try:
        SweepSpec.from_dict(fields)
    except GeminiError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the recipe's settings are not valid: {exc}") from None
    return {key: (list(fields[f]) if f != "batch_size" else int(fields[f])) for key, f in FORM.items() if f in fields}


def after_load(values: dict) -> None:
    """Offer ratios a loaded recipe holds that the form's list does not."""
    extra = [r for r in values.get("sw_ratios", []) if r not in st.session_state.get("sw_ratio_choices", [])]
    if extra:
        st.session_state["sw_ratio_choices"] = sorted(set(st.session_state.get("sw_ratio_choices", [])) | set(extra))


# -- the Sensitivity page ----------------------------------------------------------------------------------
SENSITIVITY_RATIOS = [0.1, 0.25, 0.5, 0.75, 0.9]
PHASES = ["pruning", "quantization", "latency"]
SENSITIVITY_DEFAULTS = {"sn_ratios": [0.25, 0.5, 0.75], "sn_bits": [8, 4, 2], "sn_gran": "per-channel",
                        "sn_method": "l2-structured", "sn_phases": PHASES, "sn_examples": 512}
SENSITIVITY_INTRO = ("Each coupled group is pruned alone and each layer quantized alone, on the validation split "
                     "(test stays held out), so you see which layers can be compressed and how much.")


def sensitivity_form() -> tuple[AnalysisParams | None, str | None]:
    for k, v in SENSITIVITY_DEFAULTS.items():
        st.session_state.setdefault(k, v)
    c = st.columns(3)
    c[0].multiselect("Pruning ratios (per coupled group)", SENSITIVITY_RATIOS, key="sn_ratios")
    c[1].multiselect("Bit widths (per layer)", [b for b in BITS if b != 32], key="sn_bits")
    c[2].multiselect("Profiles", PHASES, key="sn_phases")
    c = st.columns(3)
    c[0].selectbox("Granularity", GRANULARITIES, key="sn_gran")
    c[1].selectbox("Structured method", STRUCTURED_METHODS, key="sn_method")
    c[2].number_input("Validation examples per evaluation", min_value=16, max_value=100_000, step=16,
                      key="sn_examples")
    s = st.session_state
    try:
        if "pruning" in s.sn_phases and not s.sn_ratios:
            raise GeminiError("choose at least one pruning ratio for the pruning profile")
        params = AnalysisParams(ratios=tuple(s.sn_ratios), bits=tuple(s.sn_bits), granularity=s.sn_gran,
                                prune_method=s.sn_method, max_examples=int(s.sn_examples), phases=tuple(s.sn_phases))
        if "quantization" in params.phases and not params.bits:
            raise GeminiError("choose at least one bit width for the quantization profile")
    except GeminiError as exc:
        return None, str(exc)
    return params, None


def profile_caption(profile: dict) -> None:
    base = profile.get("baseline") or {}
    st.caption(f"Analysis `{profile['analysis_id']}` of baseline `{profile['baseline_key']}` · "
               f"{profile['examples']} validation examples (accuracy {base.get('accuracy', 0) * 100:.2f}%) · "
               f"{profile['done_steps']} of {profile['total_steps']} evaluations · {profile['status']} · "
               f"{profile['seconds']:.0f} s. Drops are measured one layer or group at a time.")
    st.caption("Both heatmaps share one colour scale: accuracy lost on the validation examples, in points. "
               "“(+N)” after a group: pruning it also removes the matching channels of N more coupled layers.")


# -- the Export page -------------------------------------------------------------------------------------
def point_metrics(point: dict, row) -> None:
    """Accuracy, latency, size (with their change against the dense fp32 reference), and the estimates."""
    c = st.columns(5)
    speed, smaller = row["speedup"], row["compression"]
    delta = row["accuracy_delta_pts"]
    unchanged = not finite(delta) or round(float(delta), 2) == 0  # grey, not a green "+0.00"
    c[0].metric("Accuracy", f"{point['accuracy'] * 100:.2f}%", f"{delta:+.2f} pts" if finite(delta) else None,
                delta_color="off" if unchanged else "normal", delta_arrow="off" if unchanged else "auto")
    c[1].metric("Latency p50", duration_text(point["latency_ms_p50"]),
                f"{speed:.2f}x speed-up" if finite(speed) else None,
                delta_color="green" if finite(speed) and speed >= 1 else "red",
                delta_arrow="up" if finite(speed) and speed >= 1 else "down")
    c[2].metric("Size", size_text(point["size_bytes"]),
                (f"{smaller:.2f}x smaller" if smaller >= 1 else f"{1 / smaller:.2f}x larger")
                if finite(smaller) else None,
                delta_color="green" if finite(smaller) and smaller >= 1 else "red",
                delta_arrow="down" if finite(smaller) and smaller >= 1 else "up")
    c[3].metric("Ideal size (estimate)", size_text(point.get("ideal_size_bytes")))
    c[4].metric("MACs (estimate)", f"{point.get('macs') or 0:,}")


def export_options(formats: list) -> dict:
    return {"formats": tuple(formats) or ("gemini",)}


def export_result(check: dict, point: dict) -> None:
    """The Export job's reload check: the accuracy measured again, the bytes written against the estimate."""
    recorded = check.get("recorded", {})
    ok_acc = bool(check.get("accuracy_matches_record"))
    acc_now, acc_then = check.get("accuracy"), recorded.get("accuracy")
    (st.success if ok_acc else st.warning)(
        f"Reload check: accuracy {'reproduced' if ok_acc else 'NOT reproduced'}: "
        f"{acc_now * 100:.2f}% after reloading vs {acc_then * 100:.2f}% in the sweep"
        if acc_now is not None and acc_then is not None else "Reload check: accuracy not available")
    size, ideal = check.get("size_bytes"), point.get("ideal_size_bytes")
    if size and ideal:
        st.info(f"File size: model.safetensors is {size:,} bytes ({size_text(size)}) vs "
                f"{ideal:,} bytes ideal size (estimate): {size / ideal:.2f}x the ideal. "
                f"Sweep recorded {recorded.get('size_bytes', 0):,} bytes"
                + (" (matches)." if check.get("size_matches_record") else "."))
    st.caption(f"reloaded latency p50 {check.get('latency_ms_p50', float('nan')):.3f} ms · data fingerprint "
               + ("matches" if check.get("data_fingerprint_matches") else "differs"))


def check_result(check: dict, title: str) -> None:
    """"Check a checkpoint": the checksums matched (the check got this far); the accuracy measured again."""
    recorded = check.get("recorded", {})
    acc, then = check.get("accuracy"), recorded.get("accuracy")
    ok = bool(check.get("accuracy_matches_record"))
    (st.success if ok else st.warning)(
        f"{title}: checksums match; accuracy {acc * 100:.2f}% after reloading vs "
        f"{then * 100:.2f}% recorded: {'reproduced' if ok else 'NOT reproduced'}"
        if acc is not None and then is not None else f"{title}: checksums match")
    if not check.get("data_fingerprint_matches"):
        st.warning("The test data here differs from the data the export was measured on.")
    st.caption(f"{check.get('label', '')} · model.safetensors {check.get('size_bytes', 0):,} bytes · "
               f"latency p50 {check.get('latency_ms_p50', float('nan')):.3f} ms on {check.get('device', '?')}")
