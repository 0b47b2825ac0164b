"""The classifier's re-timing of a stored run (``workflows.retime`` checks the run and hands it here): every
point rebuilt from the run's baseline and timed again, interleaved, so a change of load touches all points
alike.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from gemini_core.compress import compress, prune_copy
from gemini_core.config import CompressionConfig
from gemini_core.device import compute_threads, device_info, pick_device
from gemini_core.kinds.classifier.spec import REFERENCE
from gemini_core.measure import measure_latency
from gemini_core.results.store import Store
from gemini_core.workflows.baselines import baseline_from_description


def retime(store: Store, run: dict, points: list[dict], rounds: int = 5, device=None, threads: int | None = None,
           latency_kwargs: dict | None = None, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Time every ok point of a classifier run again, interleaved, in one pass, and store the new latencies.

    Each point is rebuilt from the run's baseline (recovery is deterministic, so it is the same model),
    then ``rounds`` rounds each time every point once in turn, so a change of load touches all points
    alike. Runs at ``threads`` (default: the thread count the run's reference point was measured at).
    Each point gets ``latency_ms_p10/p50/p90`` and ``latency_runs`` over all rounds, the conditions
    (load, threads, cores, CPU) and ``retimed_at``; its earlier figures are kept under ``previous_latency``.
    """
    run_id = run["run_id"]
    device = torch.device(device or pick_device())
    baseline = baseline_from_description(run["baseline"], device=device)
    scenario = baseline.scenario
    if threads is None and device.type == "cpu":
        reference = next((p for p in points if CompressionConfig.from_dict(p["config"]).key() == REFERENCE.key()),
                         points[0])
        threads = reference.get("threads")
    models, pruned_by_key = [], {}
    samples: dict[int, list[float]] = {p["point_id"]: [] for p in points}
    kwargs = {"min_runs": 5, "min_seconds": 0.1, "warmup": 2, **(latency_kwargs or {})}
    # Built at the thread count they are timed at: ONNX Runtime and OpenVINO take it when they are built, so a
    # runtime point built outside would run at another count than the torch points it is compared with.
    with compute_threads(int(threads) if threads and device.type == "cpu" else None):
        for point in points:
            config = CompressionConfig.from_dict(point["config"])
            if progress is not None:
                progress(f"rebuilding {config.label()}")
            if config.prune_key not in pruned_by_key:  # prune and recover once per setting, as the sweep does
                pruned_by_key[config.prune_key] = prune_copy(baseline.model, config, scenario, device=device)
            compressed = compress(baseline.model, config, scenario, device=device,
                                  pruned=pruned_by_key[config.prune_key])
            batch = scenario.splits.test.first(int(point.get("batch_size") or 32)).inputs
            models.append((point, compressed, batch))
        for r in range(rounds):
            if progress is not None:
                progress(f"round {r + 1} of {rounds}")
            for point, compressed, batch in models:
                timing = measure_latency(compressed.model, batch, device, keep_samples=True, **kwargs)
                samples[point["point_id"]].extend(timing.pop("samples_ms"))
        info = device_info(device)
    updated = []
    for point, _, _ in models:
        times = sorted(samples[point["point_id"]])

        def quantile(q: float) -> float:
            return times[min(len(times) - 1, int(round(q * (len(times) - 1))))]

        record = {k: v for k, v in point.items() if k not in ("point_id", "run_id", "point_key", "baseline_key")}
        record["previous_latency"] = {k: point.get(k) for k in ("latency_ms_p10", "latency_ms_p50", "latency_ms_p90",
                                                                 "latency_runs", "threads", "load_avg_1m")}
        record.update({"latency_ms_p10": quantile(0.1), "latency_ms_p50": quantile(0.5),
                       "latency_ms_p90": quantile(0.9), "latency_ms_min": times[0], "latency_runs": len(times),
                       "retime_rounds": rounds, "retimed_at": time.time(), "threads": info["threads"],
                       "load_avg_1m": info["load_avg_1m"], "cores": info["cores"], "cpu": info["cpu"],
                       "cpu_flags": info["cpu_flags"], "device": info["device"]})
        store.add_point(run_id, point["baseline_key"], point["point_key"], record, status="ok")
        updated.append({**record, "point_id": point["point_id"], "run_id": run_id})
    return updated
