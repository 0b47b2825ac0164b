"""Time the demo sweep through the dashboard's job (no browser): first point and total, fresh home.

    GEMINI_HOME=$(mktemp -d) python tests/e2e/measure_demo.py [--device cpu] [--out timings.json]

Prints one JSON object: first point and all points after the job starts (the click), the baseline's
origin (shipped, cached or trained) and the 1-minute load average before and after, which every figure
must be quoted with (on 2 shared cores the load changes the times several-fold). The README's demo figures
come from here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", help="sets GEMINI_DEVICE (cpu, cuda)")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.device:
        os.environ["GEMINI_DEVICE"] = args.device
    load_before = round(os.getloadavg()[0], 2)
    t0 = time.time()
    from gemini_core.device import device_info
    from ui.compute_jobs import SweepJob
    from ui.sweep_plan import demo_spec

    imported = time.time() - t0
    job = SweepJob("digits", demo_spec(), run_name="demo timing").start()
    seen = []
    while job.running:
        time.sleep(0.05)
        n = len(job.records)
        if not seen or seen[-1][0] != n:
            seen.append((n, round(time.time() - job.started_at, 2)))
    job.join()
    trained = [e for e in job.events if e.get("event") == "epoch"]
    base = job.baseline_info or {}
    out = {"state": job.state, "error": job.error, "points": len(job.records), "import_s": round(imported, 2),
           "baseline_origin": base.get("origin", "trained" if not base.get("cached") else "cached"),
           "load_avg_1m_before": load_before, "load_avg_1m_after": round(os.getloadavg()[0], 2),
           "baseline_training_s": round(trained[-1]["seconds"], 2) if trained else None,
           "first_point_s": round(job.first_record_at - job.started_at, 2) if job.first_record_at else None,
           "total_s": round(job.elapsed, 2), "device": device_info(), "cpu_count": os.cpu_count(),
           "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
           "counts": seen[:: max(1, len(seen) // 12)]}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0 if job.state == "done" else 1


if __name__ == "__main__":
    raise SystemExit(main())
