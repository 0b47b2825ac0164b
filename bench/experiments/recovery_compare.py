"""Fine-tuning vs distillation recovery, paired on the same test examples, from a sweep's JSONL.

    python -m gemini_core sweep --scenario digits --prune-method magnitude-unstructured,l1-structured \\
        --prune-ratios 0.5 --bits 32 --finetune-steps 0,5,20,60 --recovery finetune,distill --out points.jsonl
    python -m bench.experiments.recovery_compare points.jsonl

For each pruning and step count: accuracy with its Wilson 95% interval (as the product stores it), the
examples only one recovery gets right, and McNemar's exact p (``results.stats``).
"""
from __future__ import annotations

import argparse
import json

from gemini_core.results.stats import mcnemar_exact_p, parse_bits


def rows(records: list[dict]):
    by = {}
    for r in records:
        if r.get("status") == "ok":
            c = r["config"]
            by[(c["prune_method"], c["prune_ratio"], c["finetune_steps"], c.get("recovery", "finetune"))] = r
    for (method, ratio, steps, recovery), ft in sorted(by.items()):
        if recovery != "finetune" or method == "none" or ft["config"].get("bits", 32) < 32:
            continue
        kd = by.get((method, ratio, steps, "distill"))
        line = {"prune": f"{method} {ratio:.0%}", "steps": steps, "finetune_accuracy": ft["accuracy"],
                "finetune_ci95": ft["accuracy_ci95"], "load_avg_1m": ft.get("load_avg_1m")}
        if kd is not None:
            a, b = parse_bits(ft["test_correct"]), parse_bits(kd["test_correct"])
            ft_only = sum(x and not y for x, y in zip(a, b))
            kd_only = sum(y and not x for x, y in zip(a, b))
            line.update({"distill_accuracy": kd["accuracy"], "distill_ci95": kd["accuracy_ci95"],
                         "finetune_only_right": ft_only, "distill_only_right": kd_only,
                         "mcnemar_p": mcnemar_exact_p(ft_only, kd_only), "test_n": len(a)})
        yield line


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jsonl")
    args = parser.parse_args(argv)
    with open(args.jsonl) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    for line in rows(records):
        print(json.dumps(line))


if __name__ == "__main__":
    main()
