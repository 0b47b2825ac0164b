"""The Pareto front of measured points: which trade-offs no other point beats on every objective.

Shared by the dashboard's charts and the CLI (``points RUN_ID --front``).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Mapping

import numpy as np

from gemini_core.results.stats import Z95, parse_bits

DEFAULT_OBJECTIVES = {"accuracy": "max", "latency_ms_p50": "min", "size_bytes": "min"}
# A causal LM's quality is its perplexity on held-out text: LOWER is better. Its latency column holds the
# prefill time of one sequence.
LLM_OBJECTIVES = {"perplexity": "min", "latency_ms_p50": "min", "size_bytes": "min"}


def is_llm_records(records) -> bool:
    """Whether these points are causal-LM points (their quality axis is perplexity)."""
    rows = records.to_dict("records") if hasattr(records, "to_dict") else list(records)
    return any(row.get("kind") == "llm" or finite(row.get("perplexity")) for row in rows)


def objectives_for(records) -> dict:
    """The front's objectives for these points: perplexity (min) for an LLM run, accuracy (max) otherwise."""
    return dict(LLM_OBJECTIVES if is_llm_records(records) else DEFAULT_OBJECTIVES)


def finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def accuracy_within_noise(a: Mapping, b: Mapping) -> bool:
    """Whether two points' accuracies are not told apart by their test set.

    With per-example correctness on the same examples (``test_correct``): a paired test, the mean
    difference within 1.96 standard errors. Without: their 95% intervals (``accuracy_ci95``) overlap.
    Neither: only equal values are ties.
    """
    bits_a, bits_b = _bits(a.get("test_correct")), _bits(b.get("test_correct"))
    if bits_a is not None and bits_b is not None and len(bits_a) == len(bits_b) and len(bits_a):
        diff = bits_a - bits_b
        n = len(diff)
        se = math.sqrt(max(float((diff ** 2).mean() - diff.mean() ** 2), 0.0) / n)
        return abs(float(diff.mean())) <= Z95 * se
    ci_a, ci_b = a.get("accuracy_ci95"), b.get("accuracy_ci95")
    if _interval(ci_a) and _interval(ci_b):
        return ci_a[0] <= ci_b[1] and ci_b[0] <= ci_a[1]
    return False


@lru_cache(maxsize=512)
def _bits_cached(text: str) -> np.ndarray:
    return np.asarray(parse_bits(text), dtype=np.float64)


def _bits(value) -> np.ndarray | None:
    return _bits_cached(value) if isinstance(value, str) and value else None


def _interval(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(finite(v) for v in value)


def pareto_front(records, objectives: Mapping[str, str] | None = None, noise: bool = True) -> list[bool]:
    """Which records are on the Pareto front of ``objectives`` ({field: "max" | "min"}).

    A record is on the front when no other record is at least as good on every objective and
    strictly better on one. Failed records and records missing a value are never on the front.
    Ties (identical values on every objective) all stay on the front. Pure, O(n^2).

    ``noise``: accuracies within noise of each other (``accuracy_within_noise``) count as equal, so
    a point is never pushed off the front by another that is "more accurate" within noise. Compute the
    front on the axes of the chart it is drawn on (two objectives for a 2-D chart).
    ``objectives`` None: ``objectives_for(records)`` (perplexity, lower is better, for LLM points).
    """
    rows = records.to_dict("records") if hasattr(records, "to_dict") else list(records)  # a DataFrame too
    if objectives is None:
        objectives = objectives_for(rows)
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
    fields = list(objectives)
    noisy = noise and "accuracy" in objectives
    front = []
    for i, v in enumerate(vectors):
        if v is None:
            front.append(False)
            continue
        dominated = False
        for j, w in enumerate(vectors):
            if j == i or w is None:
                continue
            if noisy and accuracy_within_noise(rows[i], rows[j]):
                k = fields.index("accuracy")
                w = w[:k] + (v[k],) + w[k + 1:]  # a tie on accuracy
            if all(b >= a for a, b in zip(v, w)) and any(b > a for a, b in zip(v, w)):
                dominated = True
                break
        front.append(not dominated)
    return front


# Which way is better for each figure a chart can put on an axis.
AXIS_SENSE = {"accuracy": "max", "perplexity": "min", "perplexity_increase_pct": "min", "decode_tokens_per_s": "max",
              "prefill_ms_p50": "min", "macro_f1": "max", "accuracy_delta_pts": "max", "speedup": "max",
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
