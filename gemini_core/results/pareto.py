"""The Pareto front of measured points: which trade-offs no other point beats on every objective.

Shared by the dashboard's charts and the CLI (``points RUN_ID --front``).
"""
from __future__ import annotations

import math
from typing import Mapping

DEFAULT_OBJECTIVES = {"accuracy": "max", "latency_ms_p50": "min", "size_bytes": "min"}


def finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def pareto_front(records,
                 objectives: Mapping[str, str] = DEFAULT_OBJECTIVES) -> list[bool]:
    """Which records are on the Pareto front of ``objectives`` ({field: "max" | "min"}).

    A record is on the front when no other record is at least as good on every objective and
    strictly better on one. Failed records and records missing a value are never on the front.
    Ties (identical values on every objective) all stay on the front. Pure, O(n^2).
    """
    rows = records.to_dict("records") if hasattr(records, "to_dict") else list(records)  # a DataFrame too
    for field, sense in objectives.items():
        if sense not in ("max", "min"):
            raise ValueError(f"objective {field!r}: sense must be 'max' or 'min', not {sense!r}")
    vectors: list[tuple | None] = []
    for row in rows:
        if row.get("status", "ok") != "ok" or not all(finite(row.get(f)) for f in objectives):
            vectors.append(None)
            continue
        # Turn every objective into "bigger is better".
        vectors.append(tuple(float(row[f]) if s == "max" else -float(row[f]) for f, s in objectives.items()))
    front = []
    for i, v in enumerate(vectors):
        if v is None:
            front.append(False)
            continue
        dominated = False
        for j, w in enumerate(vectors):
            if j == i or w is None:
                continue
            if all(b >= a for a, b in zip(v, w)) and any(b > a for a, b in zip(v, w)):
                dominated = True
                break
        front.append(not dominated)
    return front


# Which way is better for each figure a chart can put on an axis.
AXIS_SENSE = {"accuracy": "max", "macro_f1": "max", "accuracy_delta_pts": "max", "speedup": "max",
              "compression": "max", "latency_ms_p50": "min", "latency_ms_p90": "min", "size_kb": "min",
              "size_bytes": "min", "ideal_size_kb": "min", "peak_memory_bytes": "min", "macs": "min"}


def front_for_axes(records, x: str, y: str) -> list[bool]:
    """The front of a two-axis chart: the points no other point beats on ``x`` and ``y`` together.

    A chart of accuracy vs latency rings this front, not the three-objective one (which keeps points that
    are only good on an axis the chart does not show)."""
    for axis in (x, y):
        if axis not in AXIS_SENSE:
            raise ValueError(f"no known direction (better = higher or lower) for axis {axis!r}")
    return pareto_front(records, {x: AXIS_SENSE[x], y: AXIS_SENSE[y]})
