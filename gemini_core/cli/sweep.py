"""``sweep``: measure a grid of compression points for any model kind, one JSON line per point.

Every kind adds its grid flags; the kind the chosen scenario builds reads its own and refuses the others'.
"""
from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from gemini_core.cli.common import add_scenario_args, baseline_from, note, print_json, print_point, scenario_from
from gemini_core.errors import GeminiError
from gemini_core.kinds.registry import KINDS, engine, kind_for_scenario
from gemini_core.results.store import Store
from gemini_core.workflows.executors import EXECUTORS
from gemini_core.workflows.ray_executor import cluster_summary, connect
from gemini_core.workflows.sweep import run_sweep


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="measure a grid of compression points (any model kind)")
    add_scenario_args(p)
    for info in KINDS.values():
        engine(info).flags.add_to(p)
    p.add_argument("--out", help="append points to this JSONL file instead of stdout")
    p.add_argument("--force", action="store_true", help="re-measure points already stored")
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--executor", choices=list(EXECUTORS), default="local",
                   help="local (this process, default) or ray (one task per unit of the grid on a Ray cluster: a "
                        "pruning setting for classifiers, a point for a causal LM)")
    p.add_argument("--ray-address", help="with --executor ray: auto or HOST:PORT of a running cluster "
                                         "(default: start a local Ray instance sized to this machine)")
    p.set_defaults(func=run)


def run(args) -> int:
    info = kind_for_scenario(args.scenario)
    for other in KINDS.values():
        if other is not info:
            engine(other).flags.refuse(args)
    flags = engine(info).flags
    spec = flags.spec_from(args)
    out_path = Path(args.out) if args.out else None
    if out_path is not None and not out_path.parent.exists():
        raise GeminiError(f"--out folder {out_path.parent} does not exist")
    if args.ray_address and args.executor != "ray":
        raise GeminiError("--ray-address needs --executor ray")
    if args.executor == "ray":
        _connect_ray(args.ray_address)  # before the baseline or the model: a bad address fails fast
    scenario = scenario_from(args)
    for line in flags.plan_notes(scenario, spec):
        note(line)
    failed, run_id = 0, None
    out = out_path.open("a", encoding="utf-8") if out_path is not None else None
    try:
        baseline = baseline_from(args, scenario) if info.trains_baseline else None
        with tqdm(total=spec.n_points(), desc=f"{scenario.name} sweep", unit="point", file=sys.stderr) as bar:
            for record in run_sweep(scenario, spec, Store(), baseline=baseline, device=args.device,
                                    force=args.force, name=args.name, executor=args.executor,
                                    ray_address=args.ray_address,
                                    progress=lambda text: bar.write(text, file=sys.stderr)):
                print_point({k: v for k, v in record.items() if k != "traceback"}, file=out)
                failed += record.get("status") == "failed"
                if record.get("status") == "ok" and not record.get("reused"):
                    bar.write(flags.point_line(record), file=sys.stderr)
                elif record.get("status") == "failed":
                    bar.write(f"{record.get('label')}: failed: {record.get('error')}", file=sys.stderr)
                run_id = record.get("run_id") or run_id
                bar.update(1)
    finally:
        if out is not None:
            out.close()
    if out is not None:  # the records went to the file: stdout still says which run they belong to
        print_json({"run_id": run_id, "out": str(out_path), "points": spec.n_points(), "failed": failed})
    if failed:
        note(f"{failed} point(s) failed; their reasons are in the records")
    return 0


def _connect_ray(address) -> None:
    seconds = connect(address)
    cluster = cluster_summary(address)
    note(f"Ray ({cluster['address']}): {cluster['n_nodes']} node(s), {cluster['cpus']:g} CPUs, "
         f"{cluster['gpus']:g} GPUs; connected in {seconds:.1f} s")
