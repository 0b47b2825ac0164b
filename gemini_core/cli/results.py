"""``runs``, ``points`` and ``retime``: what the store holds, one JSON object per line."""
from __future__ import annotations

import math

from gemini_core.cli.common import format_table, note, print_json, print_point
from gemini_core.device import condition_warnings
from gemini_core.errors import ConfigError
from gemini_core.kinds.registry import kind_of_records
from gemini_core.results.metrics import metric_of
from gemini_core.results.pareto import pareto_front
from gemini_core.results.store import Store
from gemini_core.results.suggest import Constraints, recommend
from gemini_core.results.table import points_frame
from gemini_core.results.units import size_text
from gemini_core.workflows.retime import retime_run

RUN_FIELDS = ("run_id", "name", "scenario", "status", "points_ok", "points_failed", "created_at", "baseline_key")
def add_parser(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list stored runs")
    p.set_defaults(func=run)

    p = subparsers.add_parser("points", help="print a run's points (with intervals, paired changes and warnings)")
    p.add_argument("run_id")
    p.add_argument("--front", action="store_true",
                   help="only the Pareto front: points no other beats on accuracy (beyond noise), latency and size")
    p.add_argument("--table", action="store_true",
                   help="a readable table instead of JSON lines: accuracy with its 95%% interval and test size, "
                        "the paired change vs the baseline and vs the control, latency p10-p50-p90, warnings")
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

    p = subparsers.add_parser("retime", help="time all of a run's points again, interleaved, in one pass "
                                             "(classifier or LLM run)")
    p.add_argument("run_id")
    p.add_argument("--rounds", type=int, default=5, help="rounds; each times every point once in turn (default 5)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.command == "points":
        return run_points(args)
    if args.command == "retime":
        return run_retime(args)
    return run_runs(args)


def run_runs(args) -> int:
    store = Store()
    if store.notice:  # an earlier version's store that cannot be written: read as it is
        note(store.notice)
    for stored in store.runs():
        print_json({k: stored[k] for k in RUN_FIELDS})
    return damaged_rows_warning(store)


def damaged_rows_warning(store: Store) -> int:
    """After the output: one line naming the rows that were skipped because their JSON cannot be read."""
    notice = store.damaged_rows_notice()
    if notice:
        note(f"warning: {notice}")
    return 0


def annotated_points(points: list[dict]) -> list[dict]:
    """Each point with its interval text, paired changes (vs baseline, vs control) and condition warnings."""
    df = points_frame(points)
    reference = next((p for p, ref in zip(points, df["is_reference"]) if ref), None)
    out = []
    for point, row in zip(points, df.to_dict("records")):
        extra = {k: row.get(k) for k in ("accuracy_ci95_text", "change_vs_baseline", "change_vs_control")}
        control_ci = row.get("accuracy_delta_control_ci95")
        if control_ci is not None:
            extra.update({"accuracy_delta_control": row.get("accuracy_delta_control"),
                          "accuracy_delta_control_ci95": control_ci})
        if point.get("status", "ok") == "ok":
            extra["warnings"] = condition_warnings(point, reference)
        out.append({**point, **extra})
    return out


def run_points(args) -> int:
    store = Store()
    if store.notice:  # an earlier version's store that cannot be written: read as it is
        note(store.notice)
    store.get_run(args.run_id)  # an unknown run id fails with one line
    raw = store.points(args.run_id)
    bounds = (args.min_accuracy, args.max_loss, args.max_latency_ms, args.max_size_kb)
    if args.recommend:
        constraints = Constraints(min_accuracy_pct=args.min_accuracy, max_loss_pts=args.max_loss,
                                  max_latency_ms=args.max_latency_ms, max_size_kb=args.max_size_kb)
        print_json(recommend(points_frame(raw), constraints).to_dict())
        return damaged_rows_warning(store)
    if any(b is not None for b in bounds):
        raise ConfigError("--min-accuracy, --max-loss, --max-latency-ms and --max-size-kb need --recommend")
    points = annotated_points(raw)
    if args.front:
        points = [p for p, on in zip(points, pareto_front(points)) if on]
    if args.table:
        fields = kind_of_records(points).cli_table_fields
        rows = []
        for p in points:
            accuracy = p.get("accuracy")
            rows.append({**{k: p.get(k) for k in fields},
                         "accuracy_pct": accuracy * 100 if isinstance(accuracy, float) and math.isfinite(accuracy)
                         else None, "warnings": "; ".join(p.get("warnings") or []) or None})
        # byte counts read as sizes (one formatter with the dashboard and the report); the heading drops "_bytes"
        headings = {k: k.removesuffix("_bytes") if k.endswith("_bytes") else k for k in fields}
        print(format_table([{headings[k]: size_text(r.get(k)) if k.endswith("_bytes") and r.get(k) is not None
                             else r.get(k) for k in fields} for r in rows], list(headings.values())))
        return damaged_rows_warning(store)
    for point in points:
        point.pop("traceback", None)
        for field in metric_of([point]).raw_fields:  # per-example data stays in the store (it pairs points)
            point.pop(field, None)
        print_point(point)
    return damaged_rows_warning(store)


def run_retime(args) -> int:
    store = Store()
    for record in retime_run(store, args.run_id, rounds=args.rounds, device=args.device if hasattr(args, "device")
                             else None, progress=note):
        for field in metric_of([record]).raw_fields:
            record.pop(field, None)
        record.pop("traceback", None)
        print_point(record)
    return 0
