"""Which point to ship: ``recommend`` under constraints, the per-chart front, ``points --recommend``."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gemini_core.errors import ConfigError
from gemini_core.paths import store_path
from gemini_core.results.pareto import front_for_axes
from gemini_core.results.store import Store
from gemini_core.results.suggest import Constraints, compare_points, recommend, suggest_point
from gemini_core.results.table import points_frame
from tests.fixed_run import EXPECTED_LOSS_1_LABEL, RUN_ID, write_fixed_run


@pytest.fixture
def fixed(tmp_path):
    store = Store(tmp_path / "store.sqlite")
    ids = write_fixed_run(store)
    return store, ids, points_frame(store.points(RUN_ID))


def test_max_loss_picks_the_largest_gain_within_the_loss(fixed):
    _, ids, df = fixed
    rec = recommend(df, Constraints(max_loss_pts=1.0))
    assert rec.point_id == ids[EXPECTED_LOSS_1_LABEL]
    assert rec.feasible == 4 and rec.total == 7        # reference, 8-bit, l1 0.25 dense and sparse
    assert f"#{rec.point_id}" in rec.reason and "accuracy loss ≤ 1 points" in rec.reason
    assert "largest size × speed gain" in rec.reason
    assert 1 <= len(rec.alternatives) <= 2 and rec.point_id not in [a["point_id"] for a in rec.alternatives]


def test_latency_bound_without_accuracy_bound_picks_the_most_accurate(fixed):
    _, ids, df = fixed
    rec = recommend(df, Constraints(max_latency_ms=0.5))
    assert rec.point_id == ids["l1 0.5 · 8-bit"]       # 95.2% beats 90.0% and 9.6% under 0.5 ms
    assert "most accurate" in rec.reason


def test_min_accuracy_and_size(fixed):
    _, ids, df = fixed
    rec = recommend(df, Constraints(min_accuracy_pct=95.0, max_size_kb=12))
    assert rec.point_id == ids["l1 0.5 · 8-bit"]


def test_nothing_feasible_names_the_closest_point_and_the_miss(fixed):
    _, ids, df = fixed
    rec = recommend(df, Constraints(max_loss_pts=1.0, max_latency_ms=0.5))
    assert rec.point is None and rec.feasible == 0
    assert rec.closest is not None and "No point meets" in rec.reason and "misses" in rec.reason


def test_bad_constraints_are_one_clear_error():
    with pytest.raises(ConfigError, match="max_latency_ms"):
        Constraints(max_latency_ms=-1)
    with pytest.raises(ConfigError, match="percentage"):
        Constraints(min_accuracy_pct=140)
    with pytest.raises(ConfigError, match="number"):
        Constraints(max_size_kb="big")


def test_each_chart_has_its_own_front(fixed):
    _, ids, df = fixed
    lat = dict(zip(df["point_id"], front_for_axes(df, "latency_ms_p50", "accuracy")))
    sparse = ids["l1 0.25 · 8-bit · sparse"]
    assert bool(df.loc[df["point_id"] == sparse, "pareto"].iloc[0])   # on the three-objective front
    assert lat[sparse] is False                    # "8-bit" is more accurate and faster
    assert lat[ids["l1 0.75 · 2-bit"]] is True       # the fastest point
    size = dict(zip(df["point_id"], front_for_axes(df, "size_kb", "accuracy")))
    assert size[sparse] is True                      # smaller than every more accurate point
    with pytest.raises(ValueError, match="direction"):
        front_for_axes(df, "label", "accuracy")


def test_compare_points_side_by_side(fixed):
    _, ids, df = fixed
    table = compare_points(df, [ids["dense fp32"], ids["8-bit"]])
    assert list(table.columns) == [f"#{ids['dense fp32']}", f"#{ids['8-bit']}"]
    assert table.loc["accuracy (%)"].tolist() == ["97.00", "96.90"]
    with pytest.raises(ConfigError, match="two to four"):
        compare_points(df, [ids["8-bit"]])


def _cli(home, *args):
    env = {"GEMINI_HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "gemini_core", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_points_recommend_and_broken_pipe(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_HOME", str(tmp_path))  # store_path() follows GEMINI_HOME
    ids = write_fixed_run(Store(store_path()))
    done = _cli(tmp_path, "points", RUN_ID, "--recommend", "--max-loss", "1", "--max-latency-ms", "5")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["recommended_point_id"] == ids[EXPECTED_LOSS_1_LABEL] and "Ship point" in out["reason"]
    bad = _cli(tmp_path, "points", RUN_ID, "--max-loss", "1")
    assert bad.returncode == 2 and "need --recommend" in bad.stderr and "Traceback" not in bad.stderr
    # `points ID | head -1`: the reader leaves early; no BrokenPipeError traceback
    piped = subprocess.run(f"{sys.executable} -m gemini_core points {RUN_ID} | head -1", shell=True,
                           env={"GEMINI_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, capture_output=True,
                           text=True, timeout=120)
    assert len(piped.stdout.splitlines()) == 1
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr


def test_cli_sweep_out_prints_the_run_id_and_no_profiler_lines(tmp_path, session_home, digits):
    out = tmp_path / "points.jsonl"
    env = {"GEMINI_HOME": str(session_home), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "gemini_core", "sweep", "--scenario", "digits", "--bits", "32,8",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["run_id"] and summary["points"] == 2 and summary["failed"] == 0
    assert {json.loads(line)["run_id"] for line in out.read_text().splitlines()} == {summary["run_id"]}
    assert "USDT:" not in done.stderr and "STAGE:" not in done.stderr and "profiler_st" not in done.stderr
    assert "sweep: 100%" in done.stderr                      # the tqdm bar still comes through


def _llm_run():
    """Three causal-LM points: the fp32 reference, one 4% worse in perplexity, one 10% worse but faster."""
    reference = {"quant_method": "none", "bits": 32, "prune_method": "none", "sparsity": 0.0, "pattern": "unstructured",
                 "mlp_ratio": 0.0, "head_ratio": 0.0, "recovery": "none", "recovery_steps": 0}
    points = [("fp32", reference, 10.0, 10.0, 4_000_000),
              ("rtn 8-bit", {**reference, "quant_method": "rtn", "bits": 8}, 10.4, 5.0, 1_000_000),
              ("rtn 4-bit", {**reference, "quant_method": "rtn", "bits": 4}, 11.0, 3.0, 600_000)]
    return points_frame([{"kind": "llm", "point_id": i, "run_id": "r", "label": label, "status": "ok", "config": cfg,
                          "perplexity": ppl, "latency_ms_p50": lat, "size_bytes": size}
                         for i, (label, cfg, ppl, lat, size) in enumerate(points, start=1)])


def test_the_default_bound_is_the_runs_metrics_default_tolerance(fixed):
    _, ids, df = fixed
    assert recommend(df).point_id == recommend(df, Constraints(max_loss=1.0)).point_id == ids[EXPECTED_LOSS_1_LABEL]
    llm = _llm_run()
    assert llm["perplexity_increase_pct"].round(6).tolist() == [0.0, 4.0, 10.0]
    rec = recommend(llm)  # perplexity at most 5% above the reference: the 8-bit point
    assert rec.point_id == 2 and "perplexity increase ≤ 5%" in rec.reason and "accuracy" not in rec.reason
    assert recommend(llm, Constraints(max_loss=12.0)).point_id == 3
    # a bound in accuracy cannot be met by a run that measured none: the run's own default stands in
    assert recommend(llm, Constraints(max_loss_pts=1.0)).point_id == 2
    # the pages' untouched loss bound is each run's default (1 point here, 5% there)
    assert recommend(llm, Constraints(max_latency_ms=8.0, default_loss=True)).point_id == 2
    untouched = recommend(df, Constraints(max_latency_ms=0.5, default_loss=True))
    assert untouched.point is None and "accuracy loss ≤ 1 points, latency p50 ≤ 0.5 ms" in untouched.reason
    assert int(suggest_point(llm)["point_id"]) == 2 and int(suggest_point(llm, 12.0)["point_id"]) == 3


def test_a_lower_is_better_quality_floor_is_a_ceiling():
    llm = _llm_run()
    rec = recommend(llm, Constraints(min_quality=10.5))  # perplexity at most 10.5
    assert rec.point_id == 2 and "perplexity ≤ 10.5" in rec.reason
    assert "lowest perplexity" in recommend(llm, Constraints(max_size_kb=5000)).reason
    table = compare_points(llm, [1, 2])
    assert table.loc["perplexity (lower is better)"].tolist() == ["10.000", "10.400"]
    assert table.loc["Δ perplexity vs dense fp32 (%)"].tolist() == ["+0.00", "+4.00"]
