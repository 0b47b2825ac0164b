"""How much does recovery fine-tuning depend on its seed? The fair control (unpruned, fine-tuned) and a
pruned point, each recovered with the product's recipe (``techniques.prune.prune``) at several seeds
(data order and dropout), measured against the baseline on the same test examples.

    python -m bench.experiments.recovery_seeds [--scenario digits] [--steps 20] [--ratio 0.5] [--seeds 5]

Prints one JSON line per (point, seed) with the test accuracy, its Wilson interval and the paired change
against the baseline with its bootstrap interval, then one line per point with the mean over seeds.
A sweep uses seed 0; the spread over seeds says how far one sweep's recovered accuracy can move.
"""
from __future__ import annotations

import argparse
import copy
import json

from gemini_core.config import CompressionConfig
from gemini_core.device import device_info
from gemini_core.results.stats import paired_difference, wilson_interval
from gemini_core.scenarios import get_scenario
from gemini_core.techniques.prune import prune
from gemini_core.training.baseline import get_baseline, test_correctness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="digits")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--method", default="l1-structured")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    scenario = get_scenario(args.scenario)
    baseline = get_baseline(scenario)
    info = device_info("cpu")
    points = {"control": CompressionConfig(finetune_steps=args.steps),
              f"{args.method} {args.ratio:.0%}": CompressionConfig(prune_method=args.method, prune_ratio=args.ratio,
                                                                    finetune_steps=args.steps)}
    for label, config in points.items():
        accuracies, changes = [], []
        for seed in range(args.seeds):
            model = prune(copy.deepcopy(baseline.model), config, scenario, seed=seed).model
            correct = test_correctness(model, scenario)
            change = paired_difference(correct, baseline.test_correct)
            accuracy = sum(correct) / len(correct)
            accuracies.append(accuracy)
            changes.append(change["accuracy_delta"])
            print(json.dumps({"point": label, "seed": seed, "steps": args.steps, "test_accuracy": accuracy,
                              "test_accuracy_ci95": list(wilson_interval(sum(correct), len(correct))),
                              "test_n": len(correct), "accuracy_delta": change["accuracy_delta"],
                              "accuracy_delta_ci95": change["accuracy_delta_ci95"],
                              "baseline_test_accuracy": baseline.test_accuracy, "baseline_key": baseline.key,
                              "load_avg_1m": info.get("load_avg_1m")}), flush=True)
        print(json.dumps({"point": label, "seeds": args.seeds, "mean_test_accuracy": sum(accuracies) / len(accuracies),
                          "min_test_accuracy": min(accuracies), "mean_accuracy_delta": sum(changes) / len(changes)}),
              flush=True)


if __name__ == "__main__":
    main()
