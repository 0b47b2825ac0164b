"""Interruptions: sweeps running at once on one store, two processes caching one baseline, out of memory.

(The SIGKILL-and-resume case lives in tests/engine/test_interrupt.py.)
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import torch

from gemini_core.kinds.classifier import units as sweep_module
from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.results.store import Store
from gemini_core.workflows.sweep import run_sweep
from tests.conftest import REPO

FAST = {"min_runs": 3, "min_seconds": 0.0}


# -- out of memory ----------------------------------------------------------------------------------
def test_memory_cap_fails_the_point_with_its_reason_and_the_sweep_goes_on(digits, tmp_path, monkeypatch):
    scenario, baseline = digits
    store = Store(tmp_path / "runs.sqlite")
    spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.5,), bits=(32, 8), batch_size=256)
    monkeypatch.setenv("GEMINI_MAX_BATCH_BYTES", "100000")  # 100 kB: a digits CNN needs ~10 MB at batch 256
    records = list(run_sweep(scenario, spec, store=store, latency_kwargs=FAST, baseline=baseline))
    assert len(records) == 3 and all(r["status"] == "failed" for r in records)
    for record in records:
        assert record["error"].startswith("out of memory at batch size 256: a batch of 256 needs about ")
        assert "over the cap GEMINI_MAX_BATCH_BYTES=100,000" in record["error"]
    run = store.runs()[0]
    assert run["status"] == "finished" and run["points_failed"] == 3 and run["points_ok"] == 0
    # the same grid at a batch that fits: every point measured, with its activation peak under the cap
    small = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.5,), bits=(32, 8), batch_size=2)
    monkeypatch.setenv("GEMINI_MAX_BATCH_BYTES", "2000000")
    ok = list(run_sweep(scenario, small, store=store, latency_kwargs=FAST, baseline=baseline))
    assert len(ok) == 3 and all(r["status"] == "ok" and 0 < r["activation_peak_bytes"] <= 2_000_000 for r in ok)
    # lifting the cap: the failed points of the first run are measured again, not reused as failures
    monkeypatch.delenv("GEMINI_MAX_BATCH_BYTES")
    again = list(run_sweep(scenario, spec, store=store, latency_kwargs=FAST, baseline=baseline))
    assert [r["status"] for r in again] == ["ok"] * 3 and not any(r.get("reused") for r in again)
    assert store.get_run(run["run_id"])["points_failed"] == 0
    assert store.integrity_ok()


def test_oom_raised_in_forward_above_a_batch_size(digits, tmp_path, monkeypatch):
    """torch.OutOfMemoryError from the model itself (as CUDA raises it), only for batches over 256.

    (Accuracy is computed in chunks of 256, so only the latency / memory batch can exceed it.)"""
    from gemini_core import compress as compress_module

    scenario, baseline = digits
    store = Store(tmp_path / "runs.sqlite")
    original = compress_module.compress

    def compress_with_small_memory(model, config, *args, **kwargs):
        compressed = original(model, config, *args, **kwargs)
        if config.bits == 8:
            forward = compressed.model.forward

            def limited(*inputs, **named):
                batch = len(next(iter(named.values()))) if named else len(inputs[0])
                if batch > 256:
                    raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {batch * 2} MiB")
                return forward(*inputs, **named)

            compressed.model.forward = limited
        return compressed

    monkeypatch.setattr(sweep_module, "compress", compress_with_small_memory)
    spec = SweepSpec(bits=(32, 8, 4), batch_size=32)
    small = list(run_sweep(scenario, spec, store=store, latency_kwargs=FAST, baseline=baseline))
    assert [r["status"] for r in small] == ["ok"] * 3   # batch 32 fits
    big = SweepSpec(bits=(32, 8, 4), batch_size=512)
    records = {r["config"]["bits"]: r for r in run_sweep(scenario, big, store=store, latency_kwargs=FAST, baseline=baseline)}
    assert records[32]["status"] == records[4]["status"] == "ok"
    assert records[8]["status"] == "failed"
    assert records[8]["error"].startswith("out of memory at batch size 512: CUDA out of memory")
    big_run = store.get_run(records[8]["run_id"])
    assert big_run["points_failed"] == 1 and big_run["points_ok"] == 2 and big_run["status"] == "finished"


def test_cpu_allocator_messages_count_as_out_of_memory():
    from gemini_core.config import CompressionConfig

    for exc in (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"),
                MemoryError(), torch.OutOfMemoryError("CUDA out of memory")):
        record = sweep_module.failed_record(CompressionConfig(), 512, "cpu", exc)
        assert record["error"].startswith("out of memory at batch size 512"), record["error"]
    other = sweep_module.failed_record(CompressionConfig(), 512, "cpu", ValueError("shapes do not match"))
    assert other["error"] == "ValueError: shapes do not match"


# -- two processes, one baseline --------------------------------------------------------------------
def test_a_baseline_cached_meanwhile_by_another_process_is_used(tmp_path, monkeypatch):
    """Two sweeps on a fresh home both train; the second to finish keeps the first one's weights."""
    from gemini_core.scenarios import TrainSettings, get_scenario
    from gemini_core.training import baseline as train_module

    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "home"))
    scenario = get_scenario("digits")
    settings = TrainSettings(epochs=1, batch_size=64, lr=1e-3, max_steps=3)
    first = train_model = train_module.train_model

    def other_process_finishes_first(model, *args, **kwargs):
        monkeypatch.setattr(train_module, "train_model", first)
        train_module.get_baseline(get_scenario("digits"), settings)   # "the other process" caches it now
        torch.manual_seed(123)                                         # and our training differs
        for p in model.parameters():
            p.data.normal_()
        return train_model(model, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_model", other_process_finishes_first)
    ours = train_module.get_baseline(scenario, settings)
    theirs = train_module.get_baseline(get_scenario("digits"), settings)
    assert ours.cached and theirs.cached and ours.key == theirs.key
    for a, b in zip(ours.model.state_dict().values(), theirs.model.state_dict().values()):
        assert torch.equal(a, b)
    leftovers = [p.name for p in ours.path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []                                            # no temporary folder left behind


# -- concurrent sweeps on one store ----------------------------------------------------------------------
GRIDS = {  # A and B are disjoint; C overlaps A (its reference and the 8-bit pruned point)
    "A": ["--prune-method", "l1-structured", "--prune-ratios", "0.5", "--bits", "32,8"],
    "B": ["--prune-method", "magnitude-unstructured", "--prune-ratios", "0.5", "--bits", "32,4",
          "--execution", "dense,sparse"],
    "C": ["--prune-method", "l1-structured", "--prune-ratios", "0.5", "--bits", "8,4"],
}


def test_three_cli_sweeps_at_once_on_one_home(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "GEMINI_HOME": str(home), "PYTHONPATH": str(REPO)}
    # A short baseline (10 steps): the test is about the store, not about accuracy.
    common = ["-m", "gemini_core", "sweep", "--epochs", "1", "--max-steps", "10", "--finetune-steps", "5",
              "--batch-size", "4"]
    procs = {}
    for name, flags in GRIDS.items():  # all three start before any baseline exists: they race to train it
        procs[name] = subprocess.Popen([sys.executable, *common, *flags, "--name", f"run {name}"], cwd=tmp_path,
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        outputs[name] = [json.loads(line) for line in out.splitlines()]

    store = Store(home / "gemini.sqlite")
    assert store.integrity_ok()
    runs = {r["name"]: r for r in store.runs()}
    assert sorted(runs) == ["run A", "run B", "run C"]
    assert len({r["baseline_key"] for r in runs.values()}) == 1
    summary = {}
    for name, flags in GRIDS.items():
        run = runs[f"run {name}"]
        spec = SweepSpec.from_strings(flags[1], flags[3], flags[5], executions=flags[7] if len(flags) > 6 else "dense",
                                      finetune_steps="5", batch_size=4)
        expected = {c.key() for u in spec.units() for c in u.configs}
        points = store.points(run["run_id"])
        keys = [sweep_module.CompressionConfig.from_dict(p["config"]).key() for p in points]
        assert run["status"] == "finished"
        assert len(points) == spec.n_points() == len(set(keys)) and set(keys) == expected  # its points, once each
        assert all(p["status"] == "ok" and p["run_id"] == run["run_id"] for p in points)
        printed = outputs[name]
        assert len(printed) == spec.n_points() and {p["run_id"] for p in printed} == {run["run_id"]}
        assert sorted(p["point_id"] for p in printed) == sorted(p["point_id"] for p in points)
        summary[name] = {"points": len(points), "reused": sum(bool(p.get("reused_from")) for p in points)}
    with sqlite3.connect(home / "gemini.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM points").fetchone()[0] == sum(s["points"] for s in summary.values())
        orphans = db.execute("SELECT COUNT(*) FROM points WHERE run_id NOT IN (SELECT run_id FROM runs)").fetchone()[0]
        assert orphans == 0
    baselines = [p for p in (home / "baselines").iterdir()]
    assert len(baselines) == 1 and not baselines[0].name.startswith(".")
    print("concurrent runs:", json.dumps(summary))
