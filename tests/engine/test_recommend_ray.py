"""Recommender sweeps on Ray: one streaming task per structure, the same compressed models (weights' hashes) and
ranking figures as a local sweep, stored apart from local points; a node with other data fails its points."""
from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("ray_test_session")

from gemini_core.kinds.recommend.measure import RecommendMeasureSettings  # noqa: E402
from gemini_core.kinds.recommend.points import RecommendSweepSpec  # noqa: E402
from gemini_core.kinds.recommend.ray import run_recommend_units  # noqa: E402
from gemini_core.kinds.recommend.train import RecommendTrainSettings  # noqa: E402
from gemini_core.results.store import Store  # noqa: E402
from gemini_core.scenarios import get_scenario  # noqa: E402
from gemini_core.workflows import ray_executor  # noqa: E402
from gemini_core.workflows.sweep import run_sweep  # noqa: E402

from .test_recommend_engine import SCENARIO_OPTIONS, write_log  # noqa: E402

SPEC = RecommendSweepSpec(bits=(4,), dim_prune_ratios=(0.25,), recovery_steps=2,
                          train=RecommendTrainSettings(model="mf", dim=8, epochs=4, patience=0),
                          measure=RecommendMeasureSettings(repeats=2, warmup=1, batch_users=4))


def test_a_recommend_sweep_on_ray_builds_the_local_models_and_a_wrong_node_keeps_its_reason(tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "home"))
    data = str(write_log(tmp_path / "log.csv"))
    store = Store(tmp_path / "runs.sqlite")
    local = list(run_sweep(get_scenario("recommend", data=data, **SCENARIO_OPTIONS), SPEC, store))
    executor = ray_executor.RayExecutor(None, cpus_per_task=1)
    on_ray = list(run_sweep(get_scenario("recommend", data=data, **SCENARIO_OPTIONS), SPEC, store,
                            executor=executor))
    assert len(on_ray) == len(local) == SPEC.n_points() and all(r["status"] == "ok" for r in on_ray), on_ray
    assert not any(r.get("reused") for r in on_ray)  # local points are not Ray points (another CPU share)
    by_label = {r["label"]: r for r in local}
    for record in on_ray:
        twin = by_label[record["label"]]
        assert record["executor"] == "ray" and record["ray_node"]
        assert record["weights_sha256"] == twin["weights_sha256"]  # the same compressed model, bit for bit
        assert record["ndcg_at_10"] == twin["ndcg_at_10"] and record["point_key"] != twin["point_key"]
    scenario = get_scenario("recommend", data=data, **SCENARIO_OPTIONS)
    unit = SPEC.units()[0]
    from gemini_core.kinds.recommend.baseline import get_recommend_baseline

    model = get_recommend_baseline(scenario, SPEC.train).model
    records = list(run_recommend_units(executor, model, scenario, SPEC, [(unit, set())], fingerprint="not-this"))
    assert len(records) == len(unit.configs)
    assert all(r["status"] == "failed" and "differs from the driver's" in r["error"] for r in records)


def test_library_peers_run_as_ray_tasks_like_points(tmp_path, monkeypatch):
    """A peer is a unit of its own: on Ray it is made and measured by the same code, and scores as it does here."""
    pytest.importorskip("implicit")
    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "home"))
    data = str(write_log(tmp_path / "log.csv"))
    spec = RecommendSweepSpec.from_dict({**SPEC.to_dict(), "bits": [32], "dim_prune_ratios": [],
                                         "peers": ["implicit-als"], "peer_grid": 1})
    store = Store(tmp_path / "runs.sqlite")
    local = list(run_sweep(get_scenario("recommend", data=data, **SCENARIO_OPTIONS), spec, store))
    on_ray = list(run_sweep(get_scenario("recommend", data=data, **SCENARIO_OPTIONS), spec, store,
                            executor=ray_executor.RayExecutor(None, cpus_per_task=1)))
    assert [r["status"] for r in on_ray] == ["ok", "ok"], [r.get("error") for r in on_ray]
    # Ray returns units as they finish: find the peer by its field, not by its place
    peer, here = (next(r for r in records if r.get("peer")) for records in (on_ray, local))
    assert peer["peer"] == here["peer"] == "implicit ALS (library)" and peer["executor"] == "ray"
    assert peer["weights_sha256"] == here["weights_sha256"] and peer["ndcg_at_10"] == here["ndcg_at_10"]
