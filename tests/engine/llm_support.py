"""Shared by the LLM tests: one point of a small sweep of the tiny Llama."""
from __future__ import annotations

from gemini_core.kinds.llm.point import LLMSettings
from gemini_core.kinds.llm.sweep import LLMSweepSpec
from gemini_core.results.store import Store
from gemini_core.scenarios import get_scenario
from gemini_core.workflows.sweep import run_sweep


def one_llm_point(tiny_llm_dir, tmp_path, method: str, execution: str) -> dict:
    """A 4-bit g32 ``method`` point of a small sweep of the tiny Llama on ``execution`` (after the reference)."""
    settings = LLMSettings(context_len=64, eval_tokens=128, calib_samples=4, calib_seq_len=64, prefill_tokens=16,
                           prefill_repeats=1, decode_new_tokens=3, decode_repeats=1)
    spec = LLMSweepSpec(quant_methods=(method,), bits=(4,), group_sizes=(32,), executions=(execution,),
                        settings=settings)
    records = list(run_sweep(get_scenario("llm", model=f"hf:{tiny_llm_dir}"), spec,
                                 store=Store(tmp_path / "runs.sqlite")))
    point = next(r for r in records if r["config"]["quant_method"] == method)
    assert point["status"] == "ok", point.get("error")
    return {**point, "reference": next(r for r in records if r["config"]["quant_method"] == "none")}
