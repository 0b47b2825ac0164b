"""Recovery schedule check on the headline's MiniLM setting: one-cycle recovery (the classifiers'
default schedule) against a constant rate (the text scenario's ``recovery_schedule``) and a higher peak, on
the same cached baseline, one seed.

    python -m bench.experiments.recovery_schedule [--ratios 0.25,0.5] [--steps 48] [--seeds 0,1,2] [--variants ...]

Uses the bench's MiniLM baseline (bench/results/.home, trained by ``python -m bench --only headline``).
Each variant sets the scenario's ``recovery_schedule`` (and the rate) for its run only.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import time

import torch

import gemini_core.techniques.prune as prune_module
from bench.common import Context, text_model
from gemini_core.config import CompressionConfig
from gemini_core.measure import classification_metrics


@contextlib.contextmanager
def _variant(scenario, name: str):
    """The scenario's recovery schedule (and, for the last variant, twice the rate) for one run."""
    real_schedule, real_steps = scenario.recovery_schedule, prune_module.train_steps
    scenario.recovery_schedule = "constant" if name.startswith("constant") else "one-cycle"
    if name == "one-cycle 0.6x peak":
        prune_module.train_steps = lambda *a, **k: real_steps(*a, **{**k, "lr": k["lr"] * 2})
    try:
        yield
    finally:
        scenario.recovery_schedule, prune_module.train_steps = real_schedule, real_steps


VARIANTS = ("one-cycle 0.3x peak", "constant 0.3x", "one-cycle 0.6x peak")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", default="0.25,0.5")
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--seeds", default="0", help="recovery seeds (batch order, dropout), comma list")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default="bench/results/recovery_schedule_minilm.json")
    args = parser.parse_args()
    ctx = Context()
    os.environ.setdefault("GEMINI_HOME", str(ctx.home))
    torch.set_num_threads(1)
    scenario, model, info, _ = text_model(ctx)
    records = []
    for ratio, seed in ((float(r), int(s)) for r in args.ratios.split(",") for s in args.seeds.split(",")):
        for name in args.variants.split(","):
            started = time.perf_counter()
            config = CompressionConfig(prune_method="l2-structured", prune_ratio=ratio, finetune_steps=args.steps)
            with _variant(scenario, name):
                pruned = prune_module.prune(copy.deepcopy(model).cpu(), config, scenario, device=ctx.device,
                                            seed=seed)
            metrics = classification_metrics(pruned.model, scenario.splits.test, ctx.device)
            records.append({"prune": f"l2-structured {ratio:.0%}", "steps": args.steps, "recovery": name, "seed": seed,
                            "accuracy": metrics["accuracy"], "test_n": len(scenario.splits.test),
                            "baseline_accuracy": info.get("baseline_test_accuracy"),
                            "seconds": round(time.perf_counter() - started, 1), "load_avg_1m": os.getloadavg()[0]})
            print(json.dumps(records[-1]), flush=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(records, handle, indent=1)


if __name__ == "__main__":
    main()
