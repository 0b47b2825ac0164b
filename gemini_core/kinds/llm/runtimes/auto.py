"""``auto``: measure every candidate execution on this machine and keep the fastest decoder whose
perplexity stays within the tolerance of the reference (torch eager, the model as the product
measured it). Candidates are timed interleaved in rounds (order rotated each round), so a load
spike on the shared machine falls on all of them; every timing is kept, the losers' too. A runtime
that cannot load here is reported with its one-line reason and does not compete."""
from __future__ import annotations

import statistics

from gemini_core.errors import ConfigError, GeminiError
from gemini_core.kinds.llm import metrics
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings
from gemini_core.kinds.llm.runtimes.measure import _greedy
from gemini_core.kinds.llm.runtimes.registry import LLM_EXECUTIONS
from gemini_core.kinds.llm.runtimes.run import load_runner, settings_for

REFERENCE = "torch"


def _decode_round(runner, prompt, new_tokens: int) -> float:
    _, _, seconds = _greedy(runner, prompt, new_tokens)
    return (new_tokens - 1) / seconds


def choose(model, tokenizer, eval_ids, settings: LLMRunSettings | dict | None = None,
           candidates: list[str] | None = None, rounds: int = 3, perplexity_tokens: int | None = None) -> dict:
    """{"chosen", "reference", "ppl_tolerance", "candidates": name -> {perplexity, ppl_increase,
    within_tolerance, decode_tokens_per_s (median of rounds), rounds_tokens_per_s} or {error}}."""
    base = settings_for(REFERENCE, settings)
    names = candidates or [n for n in LLM_EXECUTIONS if n != "onnxruntime-genai"] + ["onnxruntime-genai"]
    if REFERENCE not in names:
        names = [REFERENCE, *names]
    ids = eval_ids.reshape(-1)
    ppl_ids = ids[-perplexity_tokens:] if perplexity_tokens else ids
    prompt = ids[:base.prompt_tokens]
    runners, report = {}, {}
    for name in names:
        try:
            runner, load_s = load_runner(name, model, tokenizer, settings_for(name, base))
            ppl = metrics.perplexity(runner.as_model(), ppl_ids, context_len=base.context_len)["perplexity"]
            _decode_round(runner, prompt, base.new_tokens)  # warm-up
        except (GeminiError, RuntimeError, ImportError, OSError) as exc:
            report[name] = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
            continue
        runners[name] = runner
        report[name] = {"perplexity": ppl, "load_seconds": round(load_s, 2), "rounds_tokens_per_s": []}
    if REFERENCE not in runners:
        raise ConfigError(f"auto: the reference execution {REFERENCE} failed: {report[REFERENCE]['error']}")
    order = list(runners)
    for r in range(rounds):
        shift = r % len(order)
        for name in order[shift:] + order[:shift]:
            report[name]["rounds_tokens_per_s"].append(round(_decode_round(runners[name], prompt, base.new_tokens), 2))
    ref_ppl = report[REFERENCE]["perplexity"]
    for name in order:
        entry = report[name]
        entry["decode_tokens_per_s"] = statistics.median(entry["rounds_tokens_per_s"])
        entry["ppl_increase"] = entry["perplexity"] / ref_ppl - 1
        entry["within_tolerance"] = entry["ppl_increase"] <= base.ppl_tolerance
    eligible = [n for n in order if report[n]["within_tolerance"]]
    if not eligible:
        raise ConfigError(f"auto: no execution keeps perplexity within {base.ppl_tolerance:.0%} of {REFERENCE}")
    chosen = max(eligible, key=lambda n: report[n]["decode_tokens_per_s"])
    return {"chosen": chosen, "reference": REFERENCE, "ppl_tolerance": base.ppl_tolerance, "rounds": rounds,
            "new_tokens": base.new_tokens, "prompt_tokens": base.prompt_tokens, "candidates": report}
