"""A default point to suggest from a run's points table (used by the Report page and bench)."""
from __future__ import annotations

import pandas as pd

from gemini_core.results.table import ok_points, reference_row


def suggest_point(df: pd.DataFrame, max_drop_pts: float = 1.0):
    """A sensible default choice: on the front, at most ``max_drop_pts`` accuracy lost, not slower than
    the reference when such a point exists, and the best size x speed gain among those. Falls back to the
    reference row. None if nothing is measured."""
    pts = ok_points(df)
    if pts.empty:
        return None
    cands = pts[pts["pareto"] & (pts["accuracy_delta_pts"] >= -max_drop_pts) & ~pts["is_reference"]]
    faster = cands[cands["speedup"] >= 1.0]
    if len(faster):  # a suggestion that is slower than the baseline surprises people: only if nothing else
        cands = faster
    if cands.empty:
        return reference_row(df) if reference_row(df) is not None else pts.iloc[0]
    score = cands["compression"] * cands["speedup"]
    return cands.loc[score.idxmax()]
