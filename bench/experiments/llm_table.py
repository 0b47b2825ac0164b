"""Markdown tables from the LLM benchmark records (bench/results/llm_*.jsonl).

    python -m bench.experiments.llm_table
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def figures_table(records: list[dict]) -> str:
    base = next((r["perplexity"] for r in records if r["variant"] == "fp32"), None)
    rows = ["| variant | perplexity | vs fp32 | calibration / training s | load avg | measured (UTC) |",
            "|---|---|---|---|---|---|"]
    for r in records:
        ratio = f"x{r['perplexity'] / base:.3f}" if base else "-"
        seconds = r.get("seconds") if r.get("seconds") is not None else r.get("train_seconds", "-")
        name = r["variant"]
        if r.get("recovery"):
            name += f" ({r['steps']} steps, batch {r['batch_size']}x256, lr {r['lr']}"
            name += f", T={r['temperature']})" if r.get("temperature") else ")"
        rows.append(f"| {name} | {r['perplexity']:.3f} | {ratio} | {seconds} | {r['loadavg_1m']:.1f} | "
                    f"{r['time_utc'][11:16]} |")
    return "\n".join(rows)


def export_table(records: list[dict]) -> str:
    rows = ["| record | figures |", "|---|---|"]
    skip = {"variant", "time_utc", "cpu_flags", "torch", "python", "nll_per_token", "loadavg_1m"}
    for r in records:
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in r.items() if k not in skip)
        rows.append(f"| {r['variant']} | {shown} (load {r['loadavg_1m']:.1f}) |")
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="bench/results")
    args = parser.parse_args(argv)
    root = Path(args.results)
    print(figures_table(read(root / "llm_figures.jsonl")))
    print()
    print(export_table(read(root / "llm_export.jsonl")))


if __name__ == "__main__":
    main()
