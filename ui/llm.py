"""The LLM parts of the dashboard: the background LLM sweep job, the Sweep page's LLM grid form (with a demo
grid that avoids 4-bit groups of 32, which the built-in weights already were) and the Model page's LLM section.
Streamlit views and a thread around engine calls only; no torch here."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from gemini_core.kinds.llm import scenario as _llm_scenario  # noqa: F401  (registers the "llm" scenario)
from gemini_core.errors import GeminiError
from gemini_core.kinds.llm.point import EXECUTIONS, PATTERNS, QUANT_METHODS
from gemini_core.kinds.llm.quantize import RECIPES, group_size_of
from gemini_core.kinds.llm.runtimes.registry import missing as missing_executions
from gemini_core.kinds.llm.source import SMOLLM2_SOURCE
from gemini_core.kinds.llm.sweep import LLMSweepSpec

from .jobs import Job

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


class LLMSweepJob(Job):
    """Load the causal LM, then stream ``run_llm_sweep`` points into ``records`` (cancel between points)."""

    kind = "sweep"

    def __init__(self, options: dict | None, spec: LLMSweepSpec, run_name: str | None = None,
                 title: str | None = None, executor: str = "local", ray_address: str | None = None):
        super().__init__(title or f"LLM sweep ({spec.n_points()} points)")
        self.scenario_name, self.options, self.spec = "llm", dict(options or {}), spec
        self.executor, self.ray_address = executor, ray_address
        self.run_name, self.total, self.run_id = run_name, spec.n_points(), None
        self.train = self.adaptive = None
        self.baseline_info, self.baseline_history = None, []

    def work(self) -> None:
        from gemini_core.results.store import Store
        from gemini_core.scenarios import get_scenario
        from gemini_core.kinds.llm.sweep import run_llm_sweep
        from gemini_core.workflows.ray_executor import RayExecutor

        store = Store().check()
        scenario = get_scenario("llm", **self.options)
        executor = RayExecutor(self.ray_address) if self.executor == "ray" else None
        self.message = "loading the language model"
        self._collect_points(run_llm_sweep(scenario, self.spec, store=store, name=self.run_name,
                                           should_stop=self.should_stop, progress=self._say, executor=executor))

    def _say(self, text: str) -> None:
        self.message = text


def demo_spec() -> LLMSweepSpec:
    return LLMSweepSpec(**LLM_DEMO_GRID)


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
        options["model"] = f"hf:{folder}"
    else:
        st.info(SOURCE_NOTE)
    text = st.radio("Evaluation text", ["built-in (CPython's pydoc topics, held out)", "my text file"],
                    key="m_llm_text", horizontal=True)
    if text.startswith("my"):
        path = (st.text_input("Text file: .txt, .jsonl or .csv", key="m_llm_data") or "").strip()
        if not path:
            return "give the text file"
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


# -- the Export page's LLM parts -------------------------------------------------------------------------
def point_metrics(point: dict, row) -> None:
    """An LLM point's headline figures: perplexity (lower is better), prefill, decode, bytes written."""
    c = st.columns(4)
    change = row.get("perplexity_increase_pct")
    c[0].metric("Perplexity (lower is better)", f"{point['perplexity']:.3f}",
                f"{change:+.1f}% vs fp32" if change == change and change is not None else None,
                delta_color="inverse")
    c[1].metric("Prefill p50", f"{point['prefill_ms_p50']:.1f} ms")
    c[2].metric("Decode", f"{point['decode_tokens_per_s']:.1f} tokens/s")
    c[3].metric("Bytes written", f"{point['size_bytes'] / 2**20:.1f} MB",
                f"ideal {point.get('ideal_size_bytes', 0) / 2**20:.1f} MB (estimate)", delta_color="off")
    st.caption(f"context {point.get('context_len')} tokens, stride {point.get('stride')}, "
               f"{point.get('tokens_scored')} tokens scored on {point.get('text_source')}; bytes written as "
               f"{point.get('size_written', 'float32 safetensors')}")


def export_and_check(j, point_id: int, out_dir, overwrite: bool) -> dict:
    """Export an LLM point (safetensors folder + GGUF) and evaluate the export again."""
    from gemini_core.results.store import Store
    from gemini_core.kinds.llm.export import evaluate_llm_export, export_llm_point

    path = export_llm_point(Store(), point_id, out_dir, gguf="auto", overwrite=overwrite,
                            progress=lambda event: setattr(j, "message", getattr(event, "message", str(event))))
    j.message = "reloading the export and measuring it again"
    return {"point_id": point_id, "path": str(path), "check": evaluate_llm_export(path)}


def check_message(check: dict) -> tuple[bool, str]:
    """(reproduced, one line) for an evaluated LLM export."""
    ok = bool(check.get("perplexity_matches_record"))
    return ok, (f"Reload check: perplexity {'reproduced exactly' if ok else 'NOT reproduced'}: "
                f"{check['perplexity']:.6f} after reloading vs {check.get('recorded_perplexity'):.6f} recorded "
                f"(context {check.get('context_len')}, stride {check.get('stride')})")


# -- the Sensitivity page's LLM parts -----------------------------------------------------------------------
class LLMSensitivityJob(Job):
    """Quantize one decoder block at a time and measure perplexity; the growing profile is in ``profile``."""

    kind = "sensitivity"

    def __init__(self, options: dict | None, params):
        super().__init__("sensitivity of llm (per decoder block)")
        self.scenario_name, self.options, self.params = "llm", dict(options or {}), params
        self.train = self.adaptive = None
        self.baseline_info, self.baseline_history = None, []
        self.profile: dict | None = None

    def _keep(self, profile) -> None:
        data = profile.to_dict()
        with self._lock:
            self.profile, self.total = data, data["total_steps"]
        self.message = f"{data['done_steps']} of {data['total_steps']} evaluations"

    def work(self) -> None:
        from gemini_core.results.store import Store
        from gemini_core.scenarios import get_scenario
        from gemini_core.kinds.llm.sensitivity import analyse_llm

        store = Store().check()
        self.message = "loading the language model"
        profile = analyse_llm(get_scenario("llm", **self.options), self.params, store=store,
                              should_stop=self.should_stop, on_profile=self._keep)
        self._keep(profile)
        self.result = {"analysis_id": profile.analysis_id, "status": profile.status}

    def snapshot(self) -> dict:
        snap = super().snapshot()
        with self._lock:
            snap["profile"] = self.profile
        return snap


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


def show_llm_profile(profile: dict) -> None:
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
