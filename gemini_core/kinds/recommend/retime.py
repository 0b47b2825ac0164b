"""Time a recommender run's points again, interleaved, in one pass (``retime`` for recommender runs).

A sweep times its points one after the other, so a change of load between them shows up as a speed
difference. Here every point is rebuilt from the run's cached baseline (the same structure, recovery and
quantization: the rebuilt weights' hash is checked against the one the sweep stored, each structure built
once as the sweep does) and all of them are timed together by ``measure.time_scoring``: every round scores
100 and 1,000 candidates for one user and a batch of users with every point, in a rotated order. Ranking
quality and bytes are not measured again (they do not depend on load). A library peer is made again the way its
sweep made it (``peer_points.peer_model``: the implicit fit is seeded and single-threaded, its weights' hash is
checked; the TorchRec twin is converted from the same baseline) and timed in the same rounds.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch

from gemini_core.device import compute_threads, device_info
from gemini_core.errors import CheckpointError
from gemini_core.kinds.recommend.baseline import get_recommend_baseline
from gemini_core.kinds.recommend.compress import build_structure, quantize_model
from gemini_core.kinds.recommend.export import scenario_from_run
from gemini_core.kinds.recommend.measure import time_scoring
from gemini_core.kinds.recommend.peer_points import RecommendPeerConfig, peer_model
from gemini_core.kinds.recommend.points import RecommendSweepSpec, config_from_dict
from gemini_core.kinds.recommend.stored import weights_sha256
from gemini_core.kinds.recommend.train import RecommendTrainSettings

SPEED_KEYS = ("latency_ms_p10", "latency_ms_p50", "latency_ms_p90", "latency_ms_min", "latency_runs",
              "score_100_ms_p10", "score_100_ms_p50", "score_100_ms_p90", "throughput_users_per_s", "threads",
              "load_avg_1m")
SAMPLES_PER_ROUND = 6  # timing rounds per retime round: the default 5 rounds take 30 samples, as a sweep does


def retime_recommend_points(store, run: dict, points: list[dict], rounds: int = 5, threads: int | None = None,
                            progress: Callable[[str], None] | None = None) -> list[dict]:
    """New scoring times for the measured ``points`` of recommender ``run`` (``workflows.retime.retime_run``
    checks them and hands them here); earlier figures are kept under ``previous_latency``. Threads: the run's
    reference point's, unless given."""
    run_id = run["run_id"]
    scenario = scenario_from_run(run)
    spec = RecommendSweepSpec.from_dict(run.get("spec") or {})
    description = run.get("baseline") or {}
    settings = RecommendTrainSettings(**description.get("train_settings", spec.train.to_dict()))
    baseline = get_recommend_baseline(scenario, settings)
    if any(p.get("baseline_key") != baseline.key for p in points):
        raise CheckpointError(f"the data or training settings of run {run_id} changed since it was measured; "
                              "sweep it again")
    if threads is None:
        threads = next((p.get("threads") for p in points
                        if config_from_dict(p["config"]).is_reference), points[0].get("threads"))
    models, structures = [], {}
    for point in points:
        config = config_from_dict(point["config"])
        if progress is not None:
            progress(f"rebuilding {config.label()}")
        if isinstance(config, RecommendPeerConfig):
            model = peer_model(baseline.model, scenario.split, config, seed=int(settings.seed))[0]
            if point.get("weights_sha256") and weights_sha256(model) != point["weights_sha256"]:
                raise CheckpointError(f"{config.label()} did not fit to the weights the sweep measured; sweep again")
            models.append(model)
            continue
        key = config.structure().key()
        if key not in structures:  # built and recovered once per structure, as the sweep does
            structures[key] = build_structure(baseline.model, config.structure(), scenario.split, settings)[0]
        model = quantize_model(structures[key], config, scenario.split)
        if point.get("weights_sha256") and weights_sha256(model) != point["weights_sha256"]:
            raise CheckpointError(f"{config.label()} did not rebuild to the weights the sweep measured; sweep again")
        models.append(model)
    if progress is not None:
        progress(f"timing {len(models)} points together, {rounds} rounds")
    with compute_threads(int(threads) if threads else None):
        timings = time_scoring(models, scenario.split, spec.measure, rounds=max(1, rounds) * SAMPLES_PER_ROUND)
        info = device_info(torch.device("cpu"))
    updated = []
    for point, timing in zip(points, timings):
        record = {k: v for k, v in point.items() if k not in ("point_id", "run_id", "point_key", "baseline_key")}
        record["previous_latency"] = {k: point.get(k) for k in SPEED_KEYS}
        record.update(timing)
        record.update({"retime_rounds": rounds, "retimed_at": time.time(), "threads": info["threads"],
                       "load_avg_1m": info["load_avg_1m"], "cores": info["cores"], "cpu": info["cpu"],
                       "cpu_flags": info["cpu_flags"], "device": info["device"]})
        store.add_point(run_id, point["baseline_key"], point["point_key"], record, status="ok")
        updated.append({**record, "point_id": point["point_id"], "run_id": run_id})
    return updated
