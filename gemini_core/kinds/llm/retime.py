"""Time an LLM run's points again, interleaved, in one pass (``retime`` for LLM runs).

An LLM sweep measures its points one after the other, minutes apart, so a change of load between them
shows up as a speed difference. Here every point is rebuilt from the run's model (the same compression,
so the same weights: the run's baseline key is checked first), loaded in the execution it was measured
on (the one ``auto`` chose), and timed in rounds, every point once per round in a rotated order, so load
falls on all of them alike. Perplexity is not measured again (it does not depend on load).
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

from gemini_core.device import compute_threads, device_info
from gemini_core.errors import CheckpointError
from gemini_core.kinds.llm import metrics, text_data
from gemini_core.kinds.llm.export import scenario_from_run
from gemini_core.kinds.llm.point import LLMPointConfig, LLMSettings, compress_llm, runtime_settings
from gemini_core.kinds.llm.runtimes.measure import decode
from gemini_core.kinds.llm.runtimes.run import load_runner

SPEED_KEYS = ("prefill_ms_p10", "prefill_ms_p50", "prefill_ms_p90", "decode_tokens_per_s", "ttft_ms",
              "latency_ms_p10", "latency_ms_p50", "latency_ms_p90", "threads", "load_avg_1m")


@dataclasses.dataclass
class _Timed:
    point: dict
    prefill: Callable[[], None]     # one prefill of the point's prompt
    decode: Callable[[], float]     # one timed greedy decode; its tokens/s
    prefill_s: list[float] = dataclasses.field(default_factory=list)
    decode_tps: list[float] = dataclasses.field(default_factory=list)


def _timer(model, tokenizer, point: dict, ids: torch.Tensor) -> _Timed:
    config = LLMPointConfig.from_dict(point["config"])
    settings = LLMSettings.from_dict(point.get("settings") or {})
    prompt = ids[: min(settings.prefill_tokens, ids.numel())]
    execution = point.get("execution") or config.execution  # what auto chose, when it chose
    if execution == "torch":
        window = prompt.reshape(1, -1)

        def run_prefill():
            with torch.no_grad():
                model(input_ids=window, use_cache=False)

        return _Timed(point, run_prefill, lambda: metrics.decode_tokens_per_s(
            model, prompt[:32], settings.decode_new_tokens, repeats=1)["decode_tokens_per_s"])
    run = dataclasses.replace(runtime_settings(settings, config.grid), repeats=1)
    runner, _ = load_runner(execution, model, tokenizer, run)
    return _Timed(point, lambda: runner.start(prompt),
                  lambda: decode(runner, prompt[: run.prompt_tokens], run)["decode_tokens_per_s"])


def retime_llm_points(store, run: dict, points: list[dict], rounds: int = 5, threads: int | None = None,
                      progress: Callable[[str], None] | None = None) -> list[dict]:
    """Re-time the measured ``points`` of LLM ``run`` (``workflows.retime.retime_run`` checks and hands them
    here); each point gets new prefill percentiles (over every prefill of every round), decode tokens/s
    (median of the rounds, all kept), the conditions and ``retimed_at``, its earlier figures under
    ``previous_latency``. Threads: the run's reference point's."""
    run_id = run["run_id"]
    scenario = scenario_from_run(run)
    lm = scenario.load()
    if any(p.get("baseline_key") != scenario.baseline_key() for p in points):
        raise CheckpointError(f"the model or text of run {run_id} changed since it was measured "
                              "(its weights' or text's hash differs); sweep it again")
    if threads is None:
        threads = next((p.get("threads") for p in points if LLMPointConfig.from_dict(p["config"]).is_reference),
                       points[0].get("threads"))
    with compute_threads(int(threads) if threads else None):
        timed = []
        for point in points:
            config = LLMPointConfig.from_dict(point["config"])
            settings = LLMSettings.from_dict(point.get("settings") or {})
            if progress is not None:
                progress(f"rebuilding {config.label()}")
            model, _ = compress_llm(lm.model, lm.tokenizer, scenario.text_split, config, settings)
            ids = text_data.evaluation_ids(lm.tokenizer, scenario.text_split, settings.eval_tokens)
            timer = _timer(model, lm.tokenizer, point, ids)
            timer.prefill()  # warm-up, as every measurement has
            timed.append(timer)
        for r in range(rounds):
            if progress is not None:
                progress(f"round {r + 1} of {rounds}")
            shift = r % len(timed)
            for timer in timed[shift:] + timed[:shift]:
                repeats = int((timer.point.get("settings") or {}).get("prefill_repeats", 3))
                for _ in range(max(1, repeats)):
                    start = time.perf_counter()
                    timer.prefill()
                    timer.prefill_s.append(time.perf_counter() - start)
                timer.decode_tps.append(timer.decode())
        info = device_info(torch.device("cpu"))
    updated = []
    for timer in timed:
        point = timer.point
        ms = metrics._percentiles_ms(timer.prefill_s)
        record = {k: v for k, v in point.items() if k not in ("point_id", "run_id", "point_key", "baseline_key")}
        record["previous_latency"] = {k: point.get(k) for k in SPEED_KEYS}
        record.update({"prefill_ms_p10": ms["p10"], "prefill_ms_p50": ms["p50"], "prefill_ms_p90": ms["p90"],
                       "latency_ms_p10": ms["p10"], "latency_ms_p50": ms["p50"], "latency_ms_p90": ms["p90"],
                       "latency_runs": len(timer.prefill_s),
                       "decode_tokens_per_s": statistics.median(timer.decode_tps),
                       "decode_tokens_per_s_runs": [round(t, 2) for t in timer.decode_tps],
                       "retime_rounds": rounds, "retimed_at": time.time(), "threads": info["threads"],
                       "load_avg_1m": info["load_avg_1m"], "cores": info["cores"], "cpu": info["cpu"],
                       "cpu_flags": info["cpu_flags"]})
        store.add_point(run_id, point["baseline_key"], point["point_key"], record, status="ok")
        updated.append({**record, "point_id": point["point_id"], "run_id": run_id})
    return updated
