"""The LLM grid flags of the one ``sweep`` command (and the one line printed per LLM point). The command adds
every kind's flags; the kind a scenario builds reads its own and refuses the others'."""
from __future__ import annotations

from gemini_core.config import parse_list
from gemini_core.errors import GeminiError
from gemini_core.kinds.llm.point import EXECUTIONS, PRUNE_METHODS, QUANT_METHODS, LLMSettings
from gemini_core.kinds.llm.sensitivity import LLMSensitivityParams
from gemini_core.kinds.llm.sweep import LLMSweepSpec

# flag -> (spec field, default, help)
GRID = {
    "--quant": ("quant_methods", "", f"llm: weight quantization methods, comma list of "
               f"{', '.join(m for m in QUANT_METHODS if m != 'none')} (gptq-asym: GPTQ with zero points, "
               "activation order and range clipping; gptq-sym-head: symmetric, the same options, and the LM head "
               "calibrated too: the grid llama.cpp's q4_0 holds)"),
    "--quant-bits": ("bits", "8,4", "llm: bits for --quant (8, 4, 3, 2)"),
    "--group-size": ("group_sizes", "per-channel", "llm: per-channel and/or group sizes, e.g. per-channel,64 "
                     "(SmolLM2's source weights were asymmetric 4-bit groups of 32: an asymmetric 4-bit g32 point "
                     "would reproduce them and is refused; symmetric g32 is measured)"),
    "--llm-prune": ("prune_methods", "", f"llm: one-shot pruning, comma list of "
                    f"{', '.join(m for m in PRUNE_METHODS if m != 'none')}"),
    "--sparsity": ("sparsities", "0.5", "llm: sparsities for --llm-prune, e.g. 0.3,0.5 or 2:4"),
    "--mlp-ratio": ("mlp_ratios", "", "llm: structured pruning, shares of MLP channels removed, e.g. 0.25"),
    "--head-ratio": ("head_ratios", "", "llm: structured pruning, shares of key/value head groups removed"),
    "--llm-recovery": ("recoveries", "", "llm: recovery after pruning: finetune and/or distill"),
    "--recovery-steps": ("recovery_steps", "20", "llm: recovery optimizer steps (comma list)"),
    "--llm-execution": ("executions", "torch", f"llm: where points run, comma list of {', '.join(EXECUTIONS)} "
                        "(auto: the fastest within 15%% perplexity)"),
}
SETTINGS = {"--context-len": "context_len", "--stride": "stride", "--eval-tokens": "eval_tokens",
            "--calib-samples": "calib_samples", "--calib-seq-len": "calib_seq_len"}


def add_to(p) -> None:
    for flag, (_field, default, text) in GRID.items():
        p.add_argument(flag, dest="llm_" + flag[2:].replace("-", "_").removeprefix("llm_"), default=None,
                       help=f"{text} (default {default or 'none'})")
    defaults = LLMSettings()
    for flag, field in SETTINGS.items():
        p.add_argument(flag, dest="llm_" + field, type=int, default=None,
                       help=f"llm: {field.replace('_', ' ')} "
                            f"(default {getattr(defaults, field) or 'the context length'})")


def _dest(flag: str) -> str:
    return "llm_" + flag[2:].replace("-", "_").removeprefix("llm_")


def given(args) -> dict:
    return {flag: getattr(args, _dest(flag)) for flag in GRID if getattr(args, _dest(flag), None) is not None}


def refuse(args) -> None:
    """One line when this kind's flags are given for a scenario of another kind."""
    used = list(given(args)) + [f for f, field in SETTINGS.items() if getattr(args, "llm_" + field, None) is not None]
    if used:
        raise GeminiError(f"{', '.join(used)}: LLM flags; use them with --scenario llm")


def spec_from(args) -> LLMSweepSpec:
    """The grid these flags ask for (defaults for the flags not given)."""
    values = {GRID[flag][0]: GRID[flag][1] for flag in GRID}
    values.update({GRID[flag][0]: value for flag, value in given(args).items()})
    settings = {field: getattr(args, "llm_" + field) for field in SETTINGS.values()
                if getattr(args, "llm_" + field, None) is not None}
    return LLMSweepSpec.from_strings(**values, settings=LLMSettings(**settings))


def point_line(record: dict) -> str:
    line = (f"{record.get('label')}: perplexity {record['perplexity']:.3f} (context {record.get('context_len')}, "
            f"stride {record.get('stride')}, {record.get('tokens_scored')} tokens), prefill p50 "
            f"{record.get('prefill_ms_p50', float('nan')):.1f} ms, decode {record.get('decode_tokens_per_s', 0):.1f} "
            f"tok/s, {record.get('seconds', 0):.0f} s")
    if record.get("accuracy") is not None:
        line += f", zero-shot accuracy {record['accuracy'] * 100:.1f}%"
    return line


def plan_notes(scenario, spec: LLMSweepSpec) -> list[str]:
    """What the user should know before the sweep starts (stderr lines)."""
    notes = []
    if scenario.builtin_model and any(p.bits == 4 and p.group_size == 32 for p in spec.points()):
        notes.append("warning: SmolLM2's source weights were already 4-bit Q4_1 groups of 32; 4-bit g32 points "
                     "reproduce that grid and measure nothing")
    notes.append(f"llm sweep: {spec.n_points()} points, about {spec.estimate_seconds() / 60:.0f} min for SmolLM2 on 2 "
                 "cores (estimate)")
    return notes


def sensitivity_params(args):
    """The ``sensitivity`` command's flags, read for a causal LM (one decoder block quantized at a time)."""
    from_text = parse_list(args.bits, int, "bits") if args.bits != "8,4,2" else [4, 3]
    return LLMSensitivityParams(bits=tuple(from_text), group_size=args.group_size, eval_tokens=args.eval_tokens)


def profile_rows(profile) -> tuple[list[dict], str]:
    """The profile as table rows (one per decoder block) and the advice line."""
    rows = [{"block": e["layer"], **{f"ppl@{r['bits']}b": r["perplexity"] for r in e["results"]},
             **{f"+%@{r['bits']}b": r["drop_points"] for r in e["results"]}} for e in profile.quantization]
    advice = (f"fp32 perplexity {profile.baseline['perplexity']:.3f} on {profile.examples} tokens "
              f"(context {profile.baseline['context_len']}); keep at higher precision: "
              + ", ".join(f"{r['block']} ({r['perplexity_increase_pct']:+.1f}% at {r['bits']}-bit)"
                          for r in profile.params.get("keep_high_precision", [])))
    return rows, advice
