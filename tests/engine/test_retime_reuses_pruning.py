"""``retime`` rebuilds a run's points to time them interleaved: one pruning (and recovery) per pruning setting,
as the sweep does, so a MiniLM run with several bit widths and runtimes per ratio is not fine-tuned again per point."""
from __future__ import annotations

from gemini_core.kinds.classifier import retime
from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.results.store import Store
from gemini_core.workflows.retime import retime_run
from gemini_core.workflows.sweep import run_sweep


def test_retime_prunes_once_per_setting_and_keeps_accuracy(digits, monkeypatch):
    scenario, baseline = digits
    spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.5,), bits=(32, 8), finetune_steps=(5,),
                     batch_size=8)
    records = list(run_sweep(scenario, spec, Store(), device="cpu",
                             latency_kwargs={"min_runs": 3, "min_seconds": 0.0}, baseline=baseline))
    settings = {tuple(retime.CompressionConfig.from_dict(r["config"]).prune_key) for r in records}
    assert len(records) > len(settings)  # two bit widths share the pruned setting (plus reference and control)
    calls = []
    real = retime.prune_copy

    def counting(model, config, *args, **kwargs):
        calls.append(config.prune_key)
        return real(model, config, *args, **kwargs)

    monkeypatch.setattr(retime, "prune_copy", counting)
    retimed = retime_run(Store(), records[0]["run_id"], rounds=1, latency_kwargs={"min_runs": 2, "min_seconds": 0.0})
    assert sorted(calls) == sorted(settings)  # once per pruning setting, not once per point
    by_key = {r["point_key"]: r["accuracy"] for r in records}
    assert all(p["accuracy"] == by_key[p["point_key"]] and p["retime_rounds"] == 1 for p in Store().points(
        records[0]["run_id"])) and len(retimed) == len(records)


def test_retime_builds_every_point_at_the_thread_count_it_times_them_at(digits, monkeypatch):
    import torch

    scenario, baseline = digits
    spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.5,), bits=(32,), finetune_steps=(2,),
                     batch_size=8)
    records = list(run_sweep(scenario, spec, Store(), device="cpu",
                             latency_kwargs={"min_runs": 2, "min_seconds": 0.0}, baseline=baseline))
    seen = []
    real = retime.compress

    def counting(*args, **kwargs):  # ONNX Runtime / OpenVINO points take torch's thread count when built
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(retime, "compress", counting)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        retime_run(Store(), records[0]["run_id"], rounds=1, threads=1,
                   latency_kwargs={"min_runs": 2, "min_seconds": 0.0})
    finally:
        torch.set_num_threads(previous)
    assert seen and set(seen) == {1}
