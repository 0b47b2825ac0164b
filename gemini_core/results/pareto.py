"""The Pareto front of measured points: which trade-offs no other point beats on every objective.

Shared by the dashboard's charts and the CLI (``points RUN_ID --front``).
"""
from __future__ import annotations

from typing import Mapping

from gemini_core.results.metrics import METRICS, finite, metric_for_column, metric_of
from gemini_core.results.peers import is_peer

__all__ = ["COST_OBJECTIVES", "axis_sense", "finite", "front_for_axes", "objectives_for", "pareto_front"]

# Latency and size: lower is better for every kind (the latency column times what the kind's
# ``latency_heading`` says: a batch for a classifier, the prefill of one sequence for a causal LM).
COST_OBJECTIVES = {"latency_ms_p50": "min", "size_bytes": "min"}


def objectives_for(records) -> dict:
    """The front's objectives for these points: their kind's quality metric (its direction), latency, size."""
    metric = metric_of(records)
    return {metric.column: metric.direction, **COST_OBJECTIVES}


def pareto_front(records, objectives: Mapping[str, str] | None = None, noise: bool = True) -> list[bool]:
    """Which records are on the Pareto front of ``objectives`` ({field: "max" | "min"}).

    A record is on the front when no other record is at least as good on every objective and
    strictly better on one. Failed records and records missing a value are never on the front.
    Ties (identical values on every objective) all stay on the front. Library peers (``results.peers``) are
    never on it and push no point off it: the front is what the product can ship. Pure, O(n^2).

    ``noise``: on an objective that is a quality metric, two values the metric cannot tell apart
    (``QualityMetric.within_noise``: a paired test on the same examples or windows, else overlapping
    intervals) count as equal, so a point is never pushed off the front by another that is "better" within
    noise. Compute the front on the axes of the chart it is drawn on (two objectives for a 2-D chart).
    ``objectives`` None: ``objectives_for(records)`` (the records' kind's quality metric, latency, size).
    """
    rows = records.to_dict("records") if hasattr(records, "to_dict") else list(records)  # a DataFrame too
    if objectives is None:
        objectives = objectives_for(rows)
    for field, sense in objectives.items():
        if sense not in ("max", "min"):
            raise ValueError(f"objective {field!r}: sense must be 'max' or 'min', not {sense!r}")
    vectors: list[tuple | None] = []
    for row in rows:
        if row.get("status", "ok") != "ok" or is_peer(row) or not all(finite(row.get(f)) for f in objectives):
            vectors.append(None)
            continue
        # Turn every objective into "bigger is better".
        vectors.append(tuple(float(row[f]) if s == "max" else -float(row[f]) for f, s in objectives.items()))
    fields = list(objectives)
    # The objectives whose metric can say "within noise" (by position in the vectors).
    noisy = [(k, m) for k, m in ((k, metric_for_column(f)) for k, f in enumerate(fields))
             if noise and m is not None and m.noise_fn is not None]
    front = []
    for i, v in enumerate(vectors):
        if v is None:
            front.append(False)
            continue
        dominated = False
        for j, w in enumerate(vectors):
            if j == i or w is None:
                continue
            for k, metric in noisy:
                if metric.within_noise(rows[i], rows[j]):
                    w = w[:k] + (v[k],) + w[k + 1:]  # a tie on this quality figure
            if all(b >= a for a, b in zip(v, w)) and any(b > a for a, b in zip(v, w)):
                dominated = True
                break
        front.append(not dominated)
    return front


# Which way is better for each figure a chart can put on an axis (every quality metric adds its own column
# and its change against the reference).
AXIS_SENSE = {"decode_tokens_per_s": "max", "prefill_ms_p50": "min", "macro_f1": "max", "speedup": "max",
              "compression": "max", "latency_ms_p50": "min", "latency_ms_p90": "min", "size_kb": "min",
              "size_bytes": "min", "ideal_size_kb": "min", "peak_memory_bytes": "min", "macs": "min"}


def axis_sense(axis: str) -> str | None:
    """'max' or 'min' for a figure, None when it has no known direction."""
    metric = metric_for_column(axis)
    if metric is not None:
        return metric.direction
    for metric in METRICS.values():
        if axis == metric.change_column:  # a change: better the way the metric is, loss is the other way
            return "max" if metric.higher_is_better else "min"
    return AXIS_SENSE.get(axis)


def front_for_axes(records, x: str, y: str) -> list[bool]:
    """The front of a two-axis chart: the points no other point beats on ``x`` and ``y`` together.

    A chart of quality vs latency rings this front, not the three-objective one (which keeps points that
    are only good on an axis the chart does not show)."""
    senses = {axis: axis_sense(axis) for axis in (x, y)}
    for axis, sense in senses.items():
        if sense is None:
            raise ValueError(f"no known direction (better = higher or lower) for axis {axis!r}")
    return pareto_front(records, senses)
