"""``measure_on_runtime``: one LLM point measured on one execution (or ``auto``), as one record."""
from __future__ import annotations

from collections.abc import Callable

from gemini_core.kinds.llm.runtimes import auto
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings
from gemini_core.kinds.llm.runtimes.measure import measure_runner
from gemini_core.kinds.llm.runtimes.registry import AUTO
from gemini_core.kinds.llm.runtimes.run import load_runner, machine_bandwidth, settings_for


def measure_on_runtime(execution: str, model, tokenizer, eval_ids, settings: LLMRunSettings | dict | None = None,
                       perplexity_tokens: int | None = None,
                       also: Callable[[Callable], dict] | None = None) -> dict:
    """Load ``model`` (a transformers causal LM, possibly compressed by the product; set
    ``weight_bits``/``group_size`` in the settings to the point's grid) in ``execution`` and measure
    perplexity on ``eval_ids``, decode, prefill, memory and the bandwidth limit. ``auto`` first
    chooses among the executions (its choice and every timing are kept under ``auto``), then
    measures the chosen one fully. ``also(model_like)``: more figures from the loaded runtime (its
    logits behind the transformers call signature), merged into the record (zero-shot accuracy)."""
    choice = None
    if execution == AUTO:
        choice = auto.choose(model, tokenizer, eval_ids, settings, perplexity_tokens=perplexity_tokens)
        execution = choice["chosen"]
    run_settings = settings_for(execution, settings)
    runner, load_s = load_runner(execution, model, tokenizer, run_settings)
    bandwidth = machine_bandwidth(run_settings.threads)
    record = measure_runner(runner, eval_ids, run_settings, bandwidth["copy_gb_per_s"], perplexity_tokens,
                            bandwidth.get("read_gb_per_s"))
    record["load_seconds"] = round(load_s, 2)
    if also is not None:
        record.update(also(runner.as_model()))
    if choice is not None:
        record["auto"] = choice
    return record
