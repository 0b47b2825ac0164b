"""Gradual pruning while training vs one-shot pruning plus fine-tuning, from the same trained baseline.

    python -m bench.experiments.gradual_vs_oneshot --scenario digits --target-ratio 0.5 --extra-epochs 6

prints one JSON object: test accuracy, latency, params, MACs and wall / CPU time of the baseline
and of both arms (``compare_gradual_vs_oneshot``). Importing this module runs nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch import nn

from gemini_core.adaptive import AdaptiveSettings, train_adaptive
from gemini_core.adaptive.steps import count_macs_of
from gemini_core.compress import prune_copy
from gemini_core.config import CompressionConfig
from gemini_core.progress import ProgressFn
from gemini_core.scenarios import get_scenario
from gemini_core.techniques.prune import count_params
from gemini_core.training.baseline import get_baseline
from gemini_core.training.loop import accuracy_of


@torch.no_grad()
def interleaved_latency(models: dict[str, nn.Module], inputs: dict[str, torch.Tensor], runs: int = 30,
                        warmup: int = 3) -> dict[str, float]:
    """Median ms of one CPU forward pass per model, the models taking turns pass by pass.

    On a shared machine a burst of other work slows whichever model runs during it; taking turns
    spreads such bursts over every model, so the ratios between them hold. (``bench.common`` has
    the rounds-and-speed-ups variant the benchmark sections use.)
    """
    for model in models.values():
        model.cpu().eval()
        for _ in range(warmup):
            model(**inputs)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(runs):
        for name, model in models.items():
            t0 = time.perf_counter()
            model(**inputs)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def _figures(model: nn.Module, scenario, seconds) -> dict:
    model = model.cpu().eval()
    return {"test_accuracy": accuracy_of(model, scenario.splits.test),
            "params": count_params(model), "macs": count_macs_of(model, scenario), "train_seconds": seconds}


def compare_gradual_vs_oneshot(scenario, target_ratio: float = 0.5, extra_epochs: int = 6,
                               method: str = "l2-structured", schedule: str = "cubic", lr: float | None = None,
                               lr_policy: str = "warmup-cosine", base_settings=None, seed: int = 0,
                               batch_size: int = 32, device="cpu", progress: ProgressFn | None = None,
                               end_epoch: int | None = None) -> dict:
    """Gradual pruning while training vs one-shot pruning of the trained model plus fine-tuning.

    Both start from the same trained dense baseline and train ``extra_epochs`` more epochs with the
    same learning-rate policy, rate and seed; the gradual run prunes on ``schedule`` during those
    epochs, the one-shot run prunes to ``target_ratio`` first and only fine-tunes. Returns test
    accuracy, latency (median of passes taken in turn, batch ``batch_size``), params, MACs, and wall and
    CPU (process) time of each: on a shared machine the CPU time is the steadier figure.
    """
    base = get_baseline(scenario, base_settings, device=device)
    lr = lr if lr is not None else scenario.default_train.lr * 0.3
    batch = scenario.splits.test.first(batch_size).inputs

    common = {"epochs": extra_epochs, "lr": lr, "lr_policy": lr_policy, "seed": seed}
    t0, c0 = time.perf_counter(), time.process_time()
    gradual = train_adaptive(scenario, AdaptiveSettings(target_ratio=target_ratio, prune_method=method,
                                                        schedule=schedule, end_epoch=end_epoch, **common),
                             init=base.model, device=device, cache=False, progress=progress)
    gradual_seconds, gradual_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    pruned = prune_copy(base.model, CompressionConfig(prune_method=method, prune_ratio=target_ratio), scenario)
    right_after = accuracy_of(pruned.model, scenario.splits.test)
    oneshot = train_adaptive(scenario, AdaptiveSettings(**common), init=pruned.model, device=device, cache=False,
                             progress=progress)
    oneshot_seconds, oneshot_cpu = time.perf_counter() - t0, time.process_time() - c0
    latency = interleaved_latency({"baseline": base.model, "gradual": gradual.model, "oneshot": oneshot.model},
                                  batch)
    out = {
        "scenario": scenario.name, "target_ratio": target_ratio, "method": method, "schedule": schedule,
        "extra_epochs": extra_epochs, "lr": lr, "lr_policy": lr_policy, "seed": seed,
        "planned_ratios": gradual.adaptive and AdaptiveSettings.from_dict(gradual.adaptive).prune_schedule().ratios(
            extra_epochs),
        "baseline": {**_figures(base.model, scenario, (base.history[-1].get("seconds") if base.history else None)),
                     "key": base.key},
        "gradual": {**_figures(gradual.model, scenario, gradual_seconds), "train_cpu_seconds": gradual_cpu,
                    "prune_seconds": gradual.summary["prune_seconds"], "history": gradual.history,
                    "achieved_ratio": gradual.summary["achieved_ratio"]},
        "oneshot": {**_figures(oneshot.model, scenario, oneshot_seconds), "train_cpu_seconds": oneshot_cpu,
                    "accuracy_right_after_pruning": right_after,
                    "history": oneshot.history},
    }
    for name, value in latency.items():
        out[name]["latency_ms_p50"] = value
    out["latency_batch_size"] = batch_size
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.experiments.gradual_vs_oneshot", description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="digits")
    p.add_argument("--target-ratio", type=float, default=0.5)
    p.add_argument("--extra-epochs", type=int, default=6)
    p.add_argument("--method", default="l2-structured")
    p.add_argument("--schedule", default="cubic")
    p.add_argument("--lr", type=float, default=None, help="default: 0.3 x the scenario's training rate")
    p.add_argument("--lr-policy", default="warmup-cosine")
    p.add_argument("--end-epoch", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32, help="batch of the latency figure")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    out = compare_gradual_vs_oneshot(get_scenario(args.scenario), target_ratio=args.target_ratio,
                                     extra_epochs=args.extra_epochs, method=args.method, schedule=args.schedule,
                                     lr=args.lr, lr_policy=args.lr_policy, seed=args.seed,
                                     batch_size=args.batch_size, device=args.device, end_epoch=args.end_epoch)
    print(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
