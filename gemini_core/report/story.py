"""The story of a run in four answers, for a room: what did we gain, what did it cost, how sure are we,
what do we ship. The Present page shows them and passes them to the HTML report, which opens with them,
so the two never tell different stories. The point to ship is ``results.suggest.recommend`` (the rule the
Overview and the CLI use). No Streamlit in here.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from gemini_core.kinds.registry import KindInfo
from gemini_core.report.summary import compare
from gemini_core.results.metrics import QualityMetric, finite, get_metric, kind_of_rows
from gemini_core.results.stats import NO_CHANGE
from gemini_core.results.suggest import Constraints, Recommendation, recommend
from gemini_core.results.table import reference_row


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str  # the headline, a few words with units
    detail: str  # one or two sentences: the figures behind it


@dataclass(frozen=True)
class Story:
    answers: tuple[Answer, ...]
    reference: dict | None
    chosen: dict | None
    recommendation: Recommendation


def _kb(row) -> str:
    return f"{float(row['size_kb']):,.1f} KB"


def _ms(value) -> str:
    return f"{float(value):.3g} ms"


def _gain(ref: dict, chosen: dict, kind: KindInfo) -> Answer:
    cmp = compare(ref, chosen)
    speed = cmp["speed_text"]
    timed = kind.latency_heading.split(" (")[0]
    detail = (f"Size {_kb(ref)} → {_kb(chosen)}; {timed} {_ms(ref['latency_ms_p50'])} → "
              f"{_ms(chosen['latency_ms_p50'])} at batch {int(chosen.get('batch_size') or 0)} on "
              f"{chosen.get('device') or 'this machine'}, against the original (unpruned, 32-bit, dense).")
    return Answer("What did we gain?", f"{cmp['size_text']}, {speed}", detail)


def _cost(ref: dict, chosen: dict, metric: QualityMetric) -> Answer:
    cmp = compare(ref, chosen)
    change = cmp["quality_change"]
    if not finite(change):
        answer = f"{metric.label} unknown"
    elif not cmp["quality_measurable"]:
        answer = f"{NO_CHANGE} in {metric.label}"
    else:
        answer = f"{metric.change_text(change)} {metric.label}"
    detail = (f"{metric.label[:1].upper() + metric.label[1:]} {metric.format(chosen.get(metric.column))} vs "
              f"{metric.format(ref.get(metric.column))} for the original"
              + ("" if metric.higher_is_better else " (lower is better)") + ".")
    return Answer("What did it cost?", answer, detail)


def _sure(ref: dict, chosen: dict, metric: QualityMetric) -> Answer:
    paired = compare(ref, chosen)["paired"]
    p90 = chosen.get("latency_ms_p90")
    timing = (f" Latency is the median of repeated timed runs (p90 {_ms(p90)}); other work on the machine slows it."
              if finite(p90) else " Latency is the median of repeated timed runs on this machine.")
    if paired is not None:
        low, high = (metric.statistic_to_change(v) for v in paired.ci95)
        return Answer("How sure are we?", f"95% interval [{low:+.1f}, {high:+.1f}] {metric.change_unit}",
                      f"The change in {metric.label} by a {metric.paired_method} on the same {paired.n:,} "
                      f"{metric.sample_name}." + timing)
    interval = metric.interval_text(chosen)
    return Answer("How sure are we?", f"95% interval {interval}" if interval != "-" else "no interval stored",
                  f"The {metric.interval_method} interval of the shipped point's {metric.label}; the points kept no "
                  "per-example data to pair them." + timing)


def _ship(rec: Recommendation, chosen: dict | None) -> Answer:
    if chosen is None:
        return Answer("What do we ship?", "nothing meets the bounds yet", rec.reason)
    answer = f"point #{int(chosen['point_id'])}: {chosen.get('label')}"
    if rec.point_id == int(chosen["point_id"]):
        why = rec.reason.split(". Of the ", 1)  # the rule's own words for why this point
        detail = f"Of the {why[1]}" if len(why) == 2 else rec.reason
    else:
        detail = ("Chosen by hand. " + (f"Under the same bounds the rule would ship #{rec.point_id}."
                                        if rec.point_id is not None else "No point meets the bounds."))
    return Answer("What do we ship?", answer, detail)


def story(df: pd.DataFrame, constraints: Constraints | None = None, chosen_id: int | None = None) -> Story:
    """The four answers for the run's points ``df``: the shipped point is ``chosen_id`` when given, else
    the recommendation under ``constraints`` (the metric's default tolerance when None)."""
    rec = recommend(df, constraints)
    kind = kind_of_rows(df)
    metric = get_metric(kind.quality_metric)
    ref = reference_row(df)
    ref = dict(ref) if ref is not None else None
    pick = chosen_id if chosen_id is not None else rec.point_id
    rows = df[df["point_id"] == pick] if pick is not None and len(df) else df.iloc[:0]
    chosen = rows.iloc[0].to_dict() if len(rows) else None
    answers = [_ship(rec, chosen)]
    if ref is not None and chosen is not None:
        answers = [_gain(ref, chosen, kind), _cost(ref, chosen, metric), _sure(ref, chosen, metric), answers[0]]
    return Story(tuple(answers), ref, chosen, rec)

