"""Library peers: points measured beside the product's for comparison (a well-kept library's model, on the same
data and by the same measuring code) that the product did not make and cannot ship.

A record says it is a peer with ``peer``: what it is, in words ("implicit ALS (library)"); the product's own
points have none. The tables and charts show peers, marked as such; the ship rule, the Pareto front and export
never take one. Any kind may add peers: the shared code reads this field, never the kind.
"""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

PEER_FIELD = "peer"
PEER_NAME = "library peer"  # the charts' legend key and the tables' marker


def is_peer(row: Mapping) -> bool:
    """Whether a record (or a table row) is a library peer. A table's missing value is NaN, not a peer."""
    value = row.get(PEER_FIELD) if isinstance(row, Mapping) or hasattr(row, "get") else None
    return isinstance(value, str) and bool(value.strip())


def peer_mask(df: pd.DataFrame) -> pd.Series:
    """A bool per row of a points table: True for the peers."""
    if PEER_FIELD not in df.columns:
        return pd.Series(False, index=df.index, dtype=bool)
    return df[PEER_FIELD].map(lambda v: isinstance(v, str) and bool(v.strip())).astype(bool)


def without_peers(df: pd.DataFrame) -> pd.DataFrame:
    return df[~peer_mask(df)] if len(df) else df


def only_peers(df: pd.DataFrame) -> pd.DataFrame:
    return df[peer_mask(df)] if len(df) else df
