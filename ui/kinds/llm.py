"""The causal LM's parts of the dashboard: its grid form and demo on the Sweep page (a demo grid that avoids
4-bit groups of 32, which the built-in weights already were), its recipe form mapping, the Model page's
section (the model is loaded, not trained), its sensitivity form and profile, its point figures and reload
check on the Export page."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from gemini_core.errors import ConfigError, GeminiError
from gemini_core.kinds.llm.point import EXECUTIONS, PATTERNS, QUANT_METHODS
from gemini_core.kinds.llm.quantize import RECIPES, group_size_of
from gemini_core.kinds.llm.runtimes.registry import missing as missing_executions
from gemini_core.kinds.llm.source import BUILTIN_NAMES, SMOLLM2_SOURCE, conversion_status
from gemini_core.kinds.llm.sweep import LLMSweepSpec, estimate_seconds
from gemini_core.results.units import duration_text, size_text
from ui.estimates import current_load, format_range, load_factor

# The demo grid on SmolLM2: 8 and 3 bits with groups of 64, and 4 bits per-channel; never 4-bit groups of 32
# (the source weights were Q4_1, 4-bit groups of 32, so that storage reproduces them and measures nothing).
LLM_DEMO_GRID = dict(quant_methods=("rtn",), bits=(8, 4, 3), group_sizes=(64,), prune_methods=("magnitude", "wanda"),
                     sparsities=(0.5,), mlp_ratios=(0.25,))
SOURCE_NOTE = (f"The built-in SmolLM2-135M-Instruct came as {SMOLLM2_SOURCE['source_format']}: its weights were "
               f"already {SMOLLM2_SOURCE['source_bits']}-bit with groups of {SMOLLM2_SOURCE['source_group_size']}, "
               "so asymmetric 4-bit group-32 storage of them measures nothing (it reproduces the source grid) and "
               "is refused; symmetric 4-bit groups of 32 (gptq-sym-head, llama.cpp's q4_0 grid) are measured. The "
               "demo grid uses other bits and group sizes.")
QUANT = QUANT_METHODS[1:]  # the registered methods (llm.quantize.RECIPES)
PRUNE = ("magnitude", "wanda", "sparsegpt")
GROUPS = ("per-channel", 32, 64, 128)
SPARSITIES = (0.3, 0.5, 0.7, *PATTERNS[1:])
RATIOS = (0.125, 0.25, 0.5)
BITS = (8, 4, 3, 2)
# what each multiselect of the grid form offers (a recipe or a stored run may only fill in these)
FORM_OPTIONS = {"llm_quant": QUANT, "llm_bits": BITS, "llm_groups": GROUPS, "llm_prune": PRUNE,
                "llm_sparsity": SPARSITIES, "llm_mlp": RATIOS, "llm_heads": RATIOS,
                "llm_recovery": ("finetune", "distill"), "llm_exec": tuple(EXECUTIONS)}


RAY_TASK = "one task per point"
PROFILE_FIGURES = ("quantization",)  # one decoder block quantized at a time: no pruning groups, no layer timing
SENSITIVITY_INTRO = ("Which decoder blocks to keep at higher precision: each block is quantized alone and the "
                     "perplexity on the held-out text measured (lower is better).")
# the grid form's keys -> LLMSweepSpec fields; the recovery steps box holds one number
FORM = {"llm_quant": "quant_methods", "llm_bits": "bits", "llm_groups": "group_sizes", "llm_prune": "prune_methods",
        "llm_sparsity": "sparsities", "llm_mlp": "mlp_ratios", "llm_heads": "head_ratios",
        "llm_recovery": "recoveries", "llm_steps": "recovery_steps", "llm_exec": "executions"}


def demo_spec() -> LLMSweepSpec:
    return LLMSweepSpec(**LLM_DEMO_GRID)


def demo_help() -> str:
    return f"the LLM demo grid ({demo_spec().n_points()} points; no 4-bit groups of 32)"


# Loading the built-in model, idle-machine seconds: from the cache (checksums, then transformers) and converting
# the GGUF the first time. Measured on 2 cores at load 8.4-11 (about 2.2x an idle machine): converting 142 s (the
# tokenizer 102 s, dequantizing 15 s, saving 7 s, checksums 3 s), loading the cache 6.6 s. The figure measured
# here replaces the planning one once a conversion ran (conversion_status), brought to an idle machine by its load.
LOAD_CACHED_SECONDS = 3.0
CONVERT_SECONDS = 65.0


def _load_seconds(model: dict) -> tuple[float, str]:
    """(idle-machine seconds to load the model before the first point, what that is) for the page's estimate."""
    source = str((model.get("options") or {}).get("model") or "smollm2").strip()
    if source not in BUILTIN_NAMES:
        return LOAD_CACHED_SECONDS, "loading the model"
    status = conversion_status()
    if status["cached"]:
        return LOAD_CACHED_SECONDS, "loading SmolLM2 from the cache"
    measured = status["convert_seconds"]
    idle = measured / load_factor(status["load_avg_1m"], status["cores"]) if measured else CONVERT_SECONDS
    return (idle,
            "converting SmolLM2 from its GGUF once (later uses load the cached copy in seconds)"
            + (f"; measured {measured:.0f} s here" if measured else ""))


def _time_text(spec: LLMSweepSpec, model: dict) -> str:
    """First point and whole grid, each as a range, at the load now: loading the model included."""
    factor, load = current_load()
    load_s, loading = _load_seconds(model)
    first = (load_s + min(estimate_seconds(p) for p in spec.points())) * factor
    total = (load_s + spec.estimate_seconds()) * factor
    at = f" at the load now ({load:.1f})" if load is not None else ""
    return (f"first point after about {format_range(0.6 * first, 1.5 * first)}, all after about "
            f"{format_range(0.6 * total, 1.5 * total)} for SmolLM2 on 2 cores{at}, {loading} (estimate; a tiny model "
            "takes far less)")


def demo_caption(model: dict) -> str:
    spec = demo_spec()
    return (f"LLM demo grid: {spec.n_points()} points: round-to-nearest at 8, 4 and 3 bits (groups of 64), 50% "
            f"magnitude and Wanda pruning, 25% of MLP channels removed, on {model['scenario']}: "
            f"{_time_text(spec, model)}.")


def plan_text(spec: LLMSweepSpec, model: dict) -> str:
    return f"**{spec.n_points()} points** (the uncompressed model is always included) · {_time_text(spec, model)}"


def spec_from_form(state) -> dict:
    spec = {field: list(state.get(key) or []) for key, field in FORM.items() if key != "llm_steps"}
    spec["group_sizes"] = [group_size_of(g) for g in spec["group_sizes"]]
    spec["recovery_steps"] = [int(state.get("llm_steps") or 20)]
    return {"kind": "llm", **spec}


def form_values(spec: dict) -> dict:
    """A stored spec -> the form's session values, validated by LLMSweepSpec (the run's perplexity settings are
    not part of the form: the dashboard's defaults apply)."""
    unknown = sorted(set(spec) - set(FORM.values()) - {"kind", "settings"})
    if unknown:
        raise ConfigError(f"unknown LLM sweep setting(s): {', '.join(unknown)}")
    fields = {f: spec[f] for f in FORM.values() if f in spec}
    if not all(isinstance(v, list) for v in fields.values()):
        raise ConfigError("every LLM sweep setting is a list of values")
    try:
        checked = LLMSweepSpec.from_dict(fields)
    except GeminiError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the recipe's settings are not valid: {exc}") from None
    values = {key: list(getattr(checked, f)) for key, f in FORM.items() if f in fields and key != "llm_steps"}
    if "llm_groups" in values:
        values["llm_groups"] = ["per-channel" if g is None else g for g in values["llm_groups"]]
    for key, chosen in values.items():
        missing = [v for v in chosen if v not in FORM_OPTIONS[key]]
        if missing:
            raise ConfigError(f"{FORM[key].replace('_', ' ')} {missing[0]!r} is not offered by the dashboard's "
                              f"form (offered: {', '.join(map(str, FORM_OPTIONS[key]))}); run it with the CLI")
    if "recovery_steps" in fields:
        steps = checked.recovery_steps
        if len(steps) != 1 or not 1 <= int(steps[0]) <= 1000:
            raise ConfigError(f"recovery steps {list(steps)}: the dashboard's form runs one count from 1 to 1000; "
                              "run several with the CLI")
        values["llm_steps"] = int(steps[0])
    return values


def after_load(values: dict) -> None:
    """Nothing to add: every value the form offers is in its lists."""


def use_demo_grid() -> None:
    g = LLM_DEMO_GRID
    st.session_state.update(llm_quant=list(g["quant_methods"]), llm_bits=list(g["bits"]),
                            llm_groups=list(g["group_sizes"]), llm_prune=list(g["prune_methods"]),
                            llm_sparsity=list(g["sparsities"]), llm_mlp=list(g["mlp_ratios"]), llm_heads=[],
                            llm_recovery=[], llm_steps=20, llm_exec=["torch"])


def sweep_form() -> tuple[LLMSweepSpec | None, str | None]:
    """The LLM grid form; (spec, None) or (None, the problem)."""
    st.caption(SOURCE_NOTE)
    for key, value in (("llm_quant", ["rtn"]), ("llm_bits", [8, 4]), ("llm_groups", [64]), ("llm_prune", []),
                       ("llm_sparsity", [0.5]), ("llm_mlp", []), ("llm_heads", []), ("llm_recovery", []),
                       ("llm_steps", 20), ("llm_exec", ["torch"])):
        st.session_state.setdefault(key, value)
    c = st.columns(3)
    c[0].multiselect("Quantization (weights)", QUANT, key="llm_quant",
                     help="rtn: round to nearest; gptq and awq calibrate on the calibration text (minutes on 2 cores)")
    c[1].multiselect("Bits", BITS, key="llm_bits")
    c[2].multiselect("Group size", GROUPS, key="llm_groups", help="per-channel: one scale per output row")
    c = st.columns(4)
    c[0].multiselect("One-shot pruning", PRUNE, key="llm_prune",
                     help="magnitude; wanda and sparsegpt use the calibration text")
    c[1].multiselect("Sparsity", SPARSITIES, key="llm_sparsity", help="share of weights zeroed, or 2:4")
    c[2].multiselect("Structured: MLP channels removed", RATIOS, key="llm_mlp")
    c[3].multiselect("Structured: KV head groups removed", RATIOS, key="llm_heads")
    c = st.columns(3)
    c[0].multiselect("Recovery after pruning", FORM_OPTIONS["llm_recovery"], key="llm_recovery",
                     help="distill: KL to the uncompressed model's logits mixed with the next-token loss; "
                          "finetune: next-token loss")
    c[1].number_input("Recovery steps", 1, 1000, key="llm_steps")
    c[2].multiselect("Execution", list(EXECUTIONS), key="llm_exec",
                     help="each point runs and is measured on each runtime chosen: torch eager, OpenVINO (the "
                          "point's own weight grid), ONNX Runtime GenAI, llama.cpp (GGUF, the grid in q4_0 blocks), "
                          "or auto (the fastest within 15% perplexity)")
    s = st.session_state
    for name, how in missing_executions(s.llm_exec).items():
        st.caption(f"{name} is not installed here: {how}. Its points will fail with that line; auto skips it.")
    groups = tuple(group_size_of(g) for g in s.llm_groups) or (None,)
    try:
        spec = LLMSweepSpec(quant_methods=tuple(s.llm_quant), bits=tuple(s.llm_bits) or (8,), group_sizes=groups,
                            prune_methods=tuple(s.llm_prune), sparsities=tuple(s.llm_sparsity) or (0.5,),
                            mlp_ratios=tuple(s.llm_mlp), head_ratios=tuple(s.llm_heads),
                            recoveries=tuple(s.llm_recovery), recovery_steps=(int(s.llm_steps),),
                            executions=tuple(s.llm_exec) or ("torch",))
    except GeminiError as exc:
        return None, str(exc)
    asymmetric = [m for m in spec.quant_methods if m in RECIPES and not RECIPES[m].symmetric]
    if asymmetric and 4 in spec.bits and 32 in spec.group_sizes and st.session_state.get("model", {}).get(
            "options", {}).get("model", "smollm2") == "smollm2":
        st.warning(f"{', '.join(asymmetric)} at 4 bits with groups of 32 on the built-in SmolLM2 reproduces its "
                   "source grid: it measures nothing, and the sweep refuses it.")
    return spec, None


def model_section(options: dict) -> str | None:
    """The Model page's LLM choices (model source, evaluation text); fills ``options``; returns a problem or None."""
    source = st.radio("Language model", ["built-in SmolLM2-135M-Instruct", "a local folder (hf:<dir>)"],
                      key="m_llm_source", horizontal=True)
    if source.startswith("a local"):
        folder = (st.text_input("Model folder (safetensors; remote code is never run)", key="m_llm_dir") or "").strip()
        if not folder:
            return "give the model folder"
        problem = _typed_path_problem(folder, "model folder")
        if problem:
            return problem
        options["model"] = f"hf:{folder}"
    else:
        st.info(SOURCE_NOTE)
    text = st.radio("Evaluation text", ["built-in (CPython's pydoc topics, held out)", "my text file"],
                    key="m_llm_text", horizontal=True)
    if text.startswith("my"):
        path = (st.text_input("Text file: .txt, .jsonl or .csv", key="m_llm_data") or "").strip()
        if not path:
            return "give the text file"
        problem = _typed_path_problem(path, "text file")
        if problem:  # never read: its first line or column names would show in the next error
            return problem
        options["data"] = path
        if Path(path).suffix.lower() in (".csv", ".jsonl"):
            c = st.columns(2)
            column = (c[0].text_input("Text column / field", "text", key="m_llm_col") or "").strip()
            options["text_column"] = column or "text"
            if Path(path).suffix.lower() == ".csv":
                label = c[1].text_input("Label column (optional: zero-shot accuracy)", key="m_llm_label") or ""
                label = label.strip()
                if label:
                    options["label_column"] = label
    st.caption("No training: the model is loaded when a sweep starts. Quality is perplexity on the held-out last "
               "quarter of the text (lower is better); calibration uses the rest.")
    return None


def _typed_path_problem(path: str, what: str) -> str | None:
    """A typed path outside the home and GEMINI_DATA_ROOTS: shown in one line, returned as the problem."""
    from gemini_core.paths import check_typed_path

    try:
        check_typed_path(path, what)
    except GeminiError as exc:
        st.error(f"This path cannot be used: {exc}")
        return str(exc)
    return None


# -- the Export page's LLM parts -------------------------------------------------------------------------
def point_metrics(point: dict, row) -> None:
    """An LLM point's headline figures: perplexity (lower is better), prefill, decode, bytes written."""
    c = st.columns(4)
    change = row.get("perplexity_increase_pct")
    c[0].metric("Perplexity (lower is better)", f"{point['perplexity']:.3f}",
                f"{change:+.1f}% vs fp32" if change == change and change is not None else None,
                delta_color="inverse")
    c[1].metric("Prefill p50", duration_text(point["prefill_ms_p50"]))
    c[2].metric("Decode", f"{point['decode_tokens_per_s']:.1f} tokens/s")
    c[3].metric("Bytes written", size_text(point["size_bytes"]),
                f"ideal {size_text(point.get('ideal_size_bytes'))} (estimate)", delta_color="off")
    st.caption(f"context {point.get('context_len')} tokens, stride {point.get('stride')}, "
               f"{point.get('tokens_scored')} tokens scored on {point.get('text_source')}; bytes written as "
               f"{point.get('size_written', 'float32 safetensors')}")


def export_options(formats: list) -> dict:
    """The export writes the safetensors folder and the GGUF of the type that holds the point's grid."""
    return {"gguf": "auto"}


def export_result(check: dict, point: dict) -> None:
    ok, line = check_message(check)
    (st.success if ok else st.warning)(line)


def check_result(check: dict, title: str) -> None:
    ok, line = check_message(check)
    (st.success if ok else st.warning)(f"{title}: checksums match. {line}")


def check_message(check: dict) -> tuple[bool, str]:
    """(reproduced, one line) for an evaluated LLM export."""
    ok = bool(check.get("perplexity_matches_record"))
    return ok, (f"Reload check: perplexity {'reproduced exactly' if ok else 'NOT reproduced'}: "
                f"{check['perplexity']:.6f} after reloading vs {check.get('recorded_perplexity'):.6f} recorded "
                f"(context {check.get('context_len')}, stride {check.get('stride')})")


# -- the Sensitivity page's LLM parts -----------------------------------------------------------------------
def sensitivity_form():
    """(LLMSensitivityParams, None) or (None, the problem)."""
    from gemini_core.kinds.llm.sensitivity import LLMSensitivityParams

    for key, value in (("sn_llm_bits", [4, 3]), ("sn_llm_group", 64), ("sn_llm_tokens", 1024)):
        st.session_state.setdefault(key, value)
    c = st.columns(3)
    c[0].multiselect("Bit widths (per decoder block, RTN)", [8, 4, 3, 2], key="sn_llm_bits")
    c[1].selectbox("Group size", GROUPS, key="sn_llm_group")
    c[2].number_input("Held-out tokens per perplexity", min_value=64, max_value=65536, step=256, key="sn_llm_tokens")
    try:  # the group size in the form's spelling ("per-channel", 64): LLMSensitivityParams reads it
        return LLMSensitivityParams(bits=tuple(st.session_state.sn_llm_bits),
                                    group_size=st.session_state.sn_llm_group,
                                    eval_tokens=int(st.session_state.sn_llm_tokens)), None
    except GeminiError as exc:
        return None, str(exc)


def profile_caption(profile: dict) -> None:
    base = profile.get("baseline") or {}
    keep = profile.get("params", {}).get("keep_high_precision") or []
    st.caption(f"Analysis `{profile['analysis_id']}` · fp32 perplexity {base.get('perplexity', float('nan')):.3f} "
               f"on {profile['examples']} held-out tokens (context {base.get('context_len')}) · "
               f"{profile['done_steps']} of {profile['total_steps']} evaluations · {profile['status']} · "
               f"{profile['seconds']:.0f} s. Each decoder block is quantized alone (RTN); colour = perplexity "
               "increase in percent (lower is better).")
    if keep:
        st.success("Keep at higher precision: " + ", ".join(
            f"{k['block']} ({k['perplexity_increase_pct']:+.1f}% at {k['bits']}-bit)" for k in keep))
