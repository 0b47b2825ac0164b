import time

import pytest

from gemini_core import measure as measure_module
from gemini_core.kinds.classifier import units as sweep_module
from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.results.store import Store
from gemini_core.workflows.sweep import run_sweep

FAST = {"min_runs": 3, "min_seconds": 0.0}  # latency repeats kept small: tests check plumbing, not speed


def _spec(**changes):
    base = dict(prune_methods=("l1-structured",), prune_ratios=(0.0, 0.5), bits=(32, 4), executions=("dense", "sparse"),
                finetune_steps=(20,), batch_size=8)
    base.update(changes)
    return SweepSpec(**base)


def test_sweep_stores_every_point_and_a_second_run_skips_them(digits, tmp_path):
    scenario, baseline = digits
    store = Store(tmp_path / "runs.sqlite")
    spec = _spec()
    first = list(run_sweep(scenario, spec, store=store, latency_kwargs=FAST, baseline=baseline))
    assert len(first) == spec.n_points() == 9  # 8 grid points + the control (unpruned, 20 fine-tune steps)
    assert all(r["status"] == "ok" and not r.get("reused") for r in first)
    run_id = first[0]["run_id"]
    stored = store.points(run_id)
    assert len(stored) == 9 and {p["point_id"] for p in stored} == {r["point_id"] for r in first}
    for record in first:  # every figure the issue asks for is present and plausible
        assert 0.0 <= record["accuracy"] <= 1.0 and 0.0 <= record["macro_f1"] <= 1.0
        assert 0 < record["latency_ms_p50"] <= record["latency_ms_p90"]
        assert record["size_bytes"] > 0 and record["ideal_size_bytes"] > 0
        assert record["peak_memory_bytes"] > record["activation_peak_bytes"] >= 0
        assert 0 < record["nonzero_params"] <= record["params"]
        assert record["macs"] > 0 and "macs" in record["estimated_fields"]
        assert record["threads"] >= 1 and record["device"].split(":")[0] in ("cpu", "cuda")
    sizes = {(r["config"]["prune_ratio"], r["config"]["bits"]): r["size_bytes"] for r in first}
    assert sizes[(0.5, 4)] < sizes[(0.5, 32)] < sizes[(0.0, 32)]
    assert store.runs()[0]["status"] == "finished"

    calls = []
    original = sweep_module.measure_point
    sweep_module.measure_point = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        second = list(run_sweep(scenario, spec, store=store, latency_kwargs=FAST, baseline=baseline))
    finally:
        sweep_module.measure_point = original
    assert calls == [] and len(second) == 9 and all(r["reused"] for r in second)
    assert len(store.points(run_id)) == 9


def test_points_stream_out_and_an_interrupted_sweep_resumes(digits, tmp_path):
    scenario, baseline = digits
    store = Store(tmp_path / "runs.sqlite")
    spec = _spec()
    seen = []
    stop_after = 3
    for record in run_sweep(scenario, spec, store=store, latency_kwargs=FAST,
                            should_stop=lambda: len(seen) >= stop_after, baseline=baseline):
        seen.append(record)
        # the point is in the database the moment it is yielded
        assert store.get_point(record["point_id"])["accuracy"] == record["accuracy"]
    assert len(seen) == stop_after
    run = store.runs()[0]
    assert run["status"] == "cancelled" and run["points_ok"] == stop_after
    resumed = list(run_sweep(scenario, spec, store=store, latency_kwargs=FAST, baseline=baseline))
    assert sum(r.get("reused", False) for r in resumed) == stop_after
    assert len(store.points(run["run_id"])) == spec.n_points()
    assert store.integrity_ok()


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(digits, tmp_path, monkeypatch):
    scenario, baseline = digits
    store = Store(tmp_path / "runs.sqlite")
    original = measure_module.measure_point

    def out_of_memory_at_4_bits(compressed, *args, **kwargs):
        if compressed.config.bits == 4:
            raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 TB")
        return original(compressed, *args, **kwargs)

    monkeypatch.setattr(sweep_module, "measure_point", out_of_memory_at_4_bits)
    records = list(run_sweep(scenario, _spec(), store=store, latency_kwargs=FAST, baseline=baseline))
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 4 and len(records) == 9  # the control is 32-bit: it does not fail
    assert all("not enough memory" in r["error"] for r in failed)
    run = store.runs()[0]
    assert run["points_failed"] == 4 and run["points_ok"] == 5
    # failed points are measured again on the next run, finished ones are not
    monkeypatch.setattr(sweep_module, "measure_point", original)
    again = list(run_sweep(scenario, _spec(), store=store, latency_kwargs=FAST, baseline=baseline))
    assert sum(not r.get("reused") for r in again) == 4
    assert store.runs()[0]["points_failed"] == 0


def test_force_measures_again(digits, tmp_path):
    scenario, baseline = digits
    store = Store(tmp_path / "runs.sqlite")
    spec = SweepSpec(batch_size=4)
    list(run_sweep(scenario, spec, store=store, latency_kwargs=FAST, baseline=baseline))
    again = list(run_sweep(scenario, spec, store=store, force=True, latency_kwargs=FAST, baseline=baseline))
    assert len(again) == 1 and not again[0].get("reused")


def test_store_rename_and_delete(digits, tmp_path):
    scenario, baseline = digits
    store = Store(tmp_path / "runs.sqlite")
    records = list(run_sweep(scenario, SweepSpec(batch_size=2), store=store, latency_kwargs=FAST, baseline=baseline))
    run_id = records[0]["run_id"]
    store.rename_run(run_id, "first try")
    assert store.get_run(run_id)["name"] == "first try"
    store.delete_run(run_id)
    assert store.runs() == [] and store.points(run_id) == []
    with pytest.raises(Exception, match="no run"):
        store.delete_run(run_id)


def test_cancel_stops_inside_a_long_recovery(digits, tmp_path):
    """A stop asked during fine-tuning ends the sweep within a step, not after thousands of them."""
    scenario, baseline = digits
    store = Store(tmp_path / "runs.sqlite")
    spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.5,), bits=(32,), finetune_steps=(100_000,))
    asked = []

    def should_stop():
        asked.append(1)
        return len(asked) > 5  # a few recovery steps in, the user presses cancel

    records = list(run_sweep(scenario, spec, store=store, latency_kwargs=FAST, should_stop=should_stop, baseline=baseline))
    assert len(asked) < 50                                     # asked per step: it did not run 100k steps
    assert all(r["status"] == "ok" for r in records)           # the stop is not a failure of the points
    assert all(r["config"]["prune_ratio"] == 0.0 for r in records)  # only the reference was measured
    run = store.runs()[0]
    assert run["status"] == "cancelled" and run["points_failed"] == 0


def test_cancel_lands_within_one_forward_pass_while_measuring(digits, tmp_path):
    """A stop asked while a point is being timed ends it at the next forward pass, not after the point:
    long measurements (MiniLM: tens of seconds a point) no longer hold the cancel."""
    scenario, baseline = digits
    store = Store(tmp_path / "runs.sqlite")
    spec = SweepSpec(bits=(32, 8))
    asked = []

    def should_stop():
        asked.append(1)
        return len(asked) > 3  # inside the first point's accuracy batches / timed runs

    slow = {"min_runs": 10_000, "min_seconds": 60.0, "warmup": 1}  # a point that would time for a minute
    started = time.perf_counter()
    records = list(run_sweep(scenario, spec, store=store, latency_kwargs=slow, should_stop=should_stop, baseline=baseline))
    assert time.perf_counter() - started < 30 and len(asked) < 20  # stopped at once, not after 60 s of timing
    assert records == []  # the point being measured stays unmeasured (a re-run measures it), nothing failed
    run = store.runs()[0]
    assert run["status"] == "cancelled" and run["points_failed"] == 0 and run["points_ok"] == 0


def test_a_run_status_is_one_of_the_shared_words(tmp_path):
    """The store takes the run words every kind and the dashboard share, nothing else (a job's "done" is not one)."""
    from gemini_core.errors import GeminiError
    from gemini_core.results.store import RUN_STATUSES

    store = Store(tmp_path / "runs.sqlite")
    store.ensure_run("r1", "one", "digits", "k", {"bits": [32]})
    for status in RUN_STATUSES:
        store.set_status("r1", status)
        assert store.get_run("r1")["status"] == status
    with pytest.raises(GeminiError, match="run status 'done'"):
        store.set_status("r1", "done")
