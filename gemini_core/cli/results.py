"""``runs`` and ``points``: what the store holds, one JSON object per line."""
from __future__ import annotations

from gemini_core.cli.common import print_json
from gemini_core.errors import ConfigError
from gemini_core.results.pareto import pareto_front
from gemini_core.results.store import Store
from gemini_core.results.suggest import Constraints, recommend
from gemini_core.results.table import points_frame

RUN_FIELDS = ("run_id", "name", "scenario", "status", "points_ok", "points_failed", "created_at", "baseline_key")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list stored runs")
    p.set_defaults(func=run)

    p = subparsers.add_parser("points", help="print a run's points")
    p.add_argument("run_id")
    p.add_argument("--front", action="store_true",
                   help="only the Pareto front: points no other beats on accuracy, latency and size at once")
    p.add_argument("--recommend", action="store_true",
                   help="print only the point to ship under the bounds below, with the reason and two "
                        "alternatives (one JSON object)")
    p.add_argument("--min-accuracy", type=float, metavar="PCT", help="with --recommend: test accuracy at least PCT %%")
    p.add_argument("--max-loss", type=float, metavar="POINTS",
                   help="with --recommend: at most POINTS percentage points below the dense fp32 reference "
                        "(default 1 when no bound is given)")
    p.add_argument("--max-latency-ms", type=float, metavar="MS", help="with --recommend: p50 latency per batch")
    p.add_argument("--max-size-kb", type=float, metavar="KB", help="with --recommend: checkpoint size")
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
    bounds = (args.min_accuracy, args.max_loss, args.max_latency_ms, args.max_size_kb)
    if args.recommend:
        constraints = Constraints(min_accuracy_pct=args.min_accuracy, max_loss_pts=args.max_loss,
                                  max_latency_ms=args.max_latency_ms, max_size_kb=args.max_size_kb)
        print_json(recommend(points_frame(points), constraints).to_dict())
        return 0
    if any(b is not None for b in bounds):
        raise ConfigError("--min-accuracy, --max-loss, --max-latency-ms and --max-size-kb need --recommend")
    if args.front:
        points = [p for p, on in zip(points, pareto_front(points)) if on]
    for point in points:
        point.pop("traceback", None)
        print_json(point)
    return 0
