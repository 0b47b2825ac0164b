"""``runs`` and ``points``: what the store holds, one JSON object per line."""
from __future__ import annotations

from gemini_core.cli.common import print_json
from gemini_core.results.pareto import pareto_front
from gemini_core.results.store import Store

RUN_FIELDS = ("run_id", "name", "scenario", "status", "points_ok", "points_failed", "created_at", "baseline_key")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list stored runs")
    p.set_defaults(func=run)

    p = subparsers.add_parser("points", help="print a run's points")
    p.add_argument("run_id")
    p.add_argument("--front", action="store_true",
                   help="only the Pareto front: points no other beats on accuracy, latency and size at once")
    p.set_defaults(func=run)


def run(args) -> int:
    return run_points(args) if args.command == "points" else run_runs(args)


def run_runs(args) -> int:
    for stored in Store().runs():
        print_json({k: stored[k] for k in RUN_FIELDS})
    return 0


def run_points(args) -> int:
    store = Store()
    store.get_run(args.run_id)  # an unknown run id fails with one line
    points = store.points(args.run_id)
    if args.front:
        points = [p for p, on in zip(points, pareto_front(points)) if on]
    for point in points:
        point.pop("traceback", None)
        print_json(point)
    return 0
