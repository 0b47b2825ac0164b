"""The report's library-peer table: the run's peers (``results.peers``) next to the product's reference and the
chosen point, every figure with its unit. Read from the kind and its quality metric, so any kind's peers show.
Shared by the Report page and the HTML report."""
from __future__ import annotations

import html
from collections.abc import Mapping

import pandas as pd

from gemini_core.results.metrics import finite, get_metric, kind_of_rows
from gemini_core.results.peers import PEER_FIELD, only_peers
from gemini_core.results.table import ok_points, reference_row
from gemini_core.results.units import duration_text, size_text

PEER_TITLE = "Library peers (same split, not shippable)"
PEER_NOTE = ("Library peers are well-kept libraries' models measured in the same run, on the same split, by the "
             "same code as the product's points, for comparison: they are never on the front, never recommended "
             "and cannot be exported.")


def _with_interval(value, interval, scale: float, fmt: str, unit: str) -> str:
    if not finite(value):
        return "–"
    text = fmt.format(float(value) * scale) + unit
    if isinstance(interval, (list, tuple)) and len(interval) == 2 and all(finite(v) for v in interval):
        low, high = (fmt.format(float(v) * scale) for v in interval)
        text += f" [{low}, {high}]"
    return text


def peer_table(df: pd.DataFrame, chosen: Mapping | None = None) -> pd.DataFrame:
    """One row for the product's reference, one for ``chosen`` (a point of the run, when it is not the
    reference) and one per peer; empty when the run has no peers. The quality metric with its 95% interval
    and its paired change against the reference, the latency the kind times, the size, and the kind's own
    figures (with their intervals where measured)."""
    pts = ok_points(df)
    peers = only_peers(pts)
    if peers.empty:
        return pd.DataFrame()
    kind = kind_of_rows(df)
    metric = get_metric(kind.quality_metric)
    rows: list[tuple[str, Mapping]] = []
    ref = reference_row(df)
    if ref is not None:
        rows.append(("product: reference", ref.to_dict()))
    if chosen is not None and (ref is None or int(chosen["point_id"]) != int(ref["point_id"])):
        rows.append(("product: chosen", dict(chosen)))
    rows += [(str(r[PEER_FIELD]), r) for r in peers.to_dict("records")]
    unit = f" ({metric.unit})" if metric.unit else ""
    table = []
    for who, row in rows:
        point = f"#{int(row['point_id'])}" + ("" if row.get(PEER_FIELD) else f" {row.get('label')}")
        line = {"model": who, "point": point,
                f"{metric.label}{unit}, 95% interval": _with_interval(
                    row.get(metric.column), metric.interval(row), metric.scale, metric.fmt, ""),
                f"vs reference ({metric.change_unit}, paired, 95%)": str(row.get("change_vs_baseline") or "–"),
                kind.latency_heading: duration_text(row.get("latency_ms_p50")),
                "size": size_text(row.get("size_bytes"))}
        for column in kind.extra_columns:
            line[column.heading] = _with_interval(row.get(column.name), row.get(f"{column.name}_ci95"), column.scale,
                                                  column.fmt, "")
        table.append(line)
    return pd.DataFrame(table)


def peer_section_html(df: pd.DataFrame, chosen: Mapping | None = None) -> list[str]:
    """The HTML report's section of peers: a title, what peers are, the table; nothing without peers."""
    table = peer_table(df, chosen)
    if table.empty:
        return []
    return [f"<h2>{html.escape(PEER_TITLE)}</h2><p class='note'>{html.escape(PEER_NOTE)}</p>",
            table.to_html(index=False, border=0, escape=True)]
