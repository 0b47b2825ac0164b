"""Which point to ship: a default suggestion (Report page, bench) and ``recommend`` under user constraints
(the Overview and Sweep pages, ``points RUN --recommend``, the report).

Quality bounds are in the run's quality metric (``results.metrics``): a floor (or ceiling, when lower is
better) on the value and a bound on the loss against the reference in the metric's change unit. With no
bound given, the loss may be at most the metric's ``default_tolerance`` (1 accuracy point; 5% of the
reference's perplexity): one rule, parametrised by the metric.
"""
from __future__ import annotations

import math
from dataclasses import InitVar, asdict, dataclass, field
from typing import Mapping

import pandas as pd

from gemini_core.errors import ConfigError
from gemini_core.kinds.registry import KindInfo
from gemini_core.results.metrics import METRICS, QualityMetric, finite, get_metric, kind_of_rows
from gemini_core.results.table import reference_row, shippable_points
from gemini_core.results.units import BYTES_PER_KB, duration_text, over_bound_text, ratio_text, size_text


def _kind_metric(df) -> tuple[KindInfo, QualityMetric]:
    kind = kind_of_rows(df)
    return kind, get_metric(kind.quality_metric)


def _latency_name(kind: KindInfo) -> str:
    """'latency p50', 'prefill p50': what the kind's latency column times, in a few words."""
    return kind.latency_heading.split(" p50")[0] + " p50"


def suggest_point(df: pd.DataFrame, tolerance: float | None = None, max_drop_pts: float | None = None):
    """The default choice (Report page, bench): ``recommend`` with a loss of at most ``tolerance`` in the
    run's metric's change unit (None: the metric's default tolerance), so that every door ships by one rule.
    Falls back to the reference row, then to the first point; None if nothing is measured. ``max_drop_pts``
    is the older name of ``tolerance``."""
    pts = shippable_points(df)
    if pts.empty:
        return None
    bound = next((b for b in (tolerance, max_drop_pts) if b is not None), None)
    rec = recommend(df, Constraints(max_loss=bound) if bound is not None else None)
    if rec.point_id is not None:
        return pts[pts["point_id"] == rec.point_id].iloc[0]
    return reference_row(df) if reference_row(df) is not None else pts.iloc[0]


# -- "Which point should I ship?": constraints in, one recommended point and the reason out ------------
@dataclass(frozen=True)
class Constraints:
    """What the shipped point must meet. Every bound is optional (None = no bound).

    ``min_quality``: the quality metric's value as shown (accuracy in percent): at least this when higher is
    better, at most this when lower is; ``max_loss``: how much worse than the reference, in the metric's
    change unit (accuracy points; percent of the reference's perplexity); ``max_latency_ms``: p50 latency;
    ``max_size_kb``: size. ``metric``: the metric these quality bounds are in (None: the run's own).
    ``default_loss``: without a loss bound, the loss may be at most the run's metric's default tolerance
    (the pages' "at most this loss" rule left at its default: what that default is depends on the run).
    ``unbounded``: no bound at all means none (the pages' emptied boxes); otherwise it means the run's metric's
    default tolerance (a bare ``points --recommend``).

    The older names still work: ``min_accuracy_pct`` and ``max_loss_pts`` are bounds in accuracy,
    ``max_perplexity_increase_pct`` a loss bound in perplexity.
    """

    min_quality: float | None = None
    max_loss: float | None = None
    max_latency_ms: float | None = None
    max_size_kb: float | None = None
    metric: str | None = None
    default_loss: bool = False
    unbounded: bool = False
    min_accuracy_pct: InitVar[float | None] = None
    max_loss_pts: InitVar[float | None] = None
    max_perplexity_increase_pct: InitVar[float | None] = None

    def __post_init__(self, min_accuracy_pct, max_loss_pts, max_perplexity_increase_pct):
        for name, value, bound, metric in (("min_accuracy_pct", min_accuracy_pct, "min_quality", "accuracy"),
                                           ("max_loss_pts", max_loss_pts, "max_loss", "accuracy"),
                                           ("max_perplexity_increase_pct", max_perplexity_increase_pct,
                                            "max_loss", "perplexity")):
            if value is None:
                continue
            if self.metric not in (None, metric) or getattr(self, bound) is not None:
                raise ConfigError(f"{name} cannot be combined with bounds in another metric or unit")
            object.__setattr__(self, bound, value)
            object.__setattr__(self, "metric", metric)
        if self.metric is not None:
            get_metric(self.metric)  # an unknown metric is one clear error
        for name in ("min_quality", "max_loss", "max_latency_ms", "max_size_kb"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{name} must be a number, not {value!r}") from None
            if not math.isfinite(number) or number < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, not {value!r}")
            if name in ("max_latency_ms", "max_size_kb") and number == 0:
                raise ConfigError(f"{name} must be above 0 (leave it out for no bound)")
            object.__setattr__(self, name, number)
        shown = get_metric(self.metric).display_range if self.metric is not None else None
        if self.min_quality is not None and shown is not None and not shown[0] <= self.min_quality <= shown[1]:
            what = "a percentage (0-100)" if get_metric(self.metric).unit == "%" else f"{shown[0]:g}-{shown[1]:g}"
            raise ConfigError(f"the {get_metric(self.metric).label} bound is {what}, not {self.min_quality!r}")

    @property
    def loss_bound(self) -> float | None:
        """The loss bound in force: the given one, else the default tolerance when ``default_loss``."""
        return self.max_loss if self.max_loss is not None or not self.default_loss else \
            self._metric().default_tolerance

    def _metric(self, metric: QualityMetric | None = None) -> QualityMetric:
        """The metric the quality bounds are in: their own, else the run's, else the default kind's."""
        if self.metric is not None:
            return get_metric(self.metric)
        return metric or get_metric(kind_of_rows([]).quality_metric)

    @property
    def quality_bound(self) -> bool:
        return self.min_quality is not None or self.loss_bound is not None

    def any(self) -> bool:
        return any(v is not None for v in (self.min_quality, self.loss_bound, self.max_latency_ms, self.max_size_kb))

    def describe(self, latency_name: str = "latency p50") -> str:
        metric = self._metric()
        parts = []
        if self.min_quality is not None:
            parts.append(f"{metric.label} {'≥' if metric.higher_is_better else '≤'} {self.min_quality:g}{metric.unit}")
        if self.loss_bound is not None:
            unit = metric.change_unit if metric.relative else f" {metric.change_unit}"
            parts.append(f"{metric.loss_name} ≤ {self.loss_bound:g}{unit}")
        if self.max_latency_ms is not None:
            parts.append(f"{latency_name} ≤ {self.max_latency_ms:g} ms")
        if self.max_size_kb is not None:
            parts.append(f"size ≤ {self.max_size_kb:g} KB")
        return ", ".join(parts) or "no constraints"

    def misses(self, row: Mapping) -> dict[str, float]:
        """How far ``row`` is from each bound it breaks, as a share of the bound (0 = met). A missing
        figure counts as a full miss."""
        out: dict[str, float] = {}
        metric = self._metric()

        def check(name, value, bound, below: bool):
            if bound is None:
                return
            if not finite(value):
                out[name] = 1.0
                return
            gap = (float(bound) - float(value)) if below else (float(value) - float(bound))
            if gap > 1e-9:
                out[name] = gap / max(abs(float(bound)), 1e-9)

        check(metric.label, metric.shown(row.get(metric.column)), self.min_quality, below=metric.higher_is_better)
        change = row.get(metric.change_column)
        check(metric.loss_name, metric.loss(float(change)) if finite(change) else None, self.loss_bound, below=False)
        check("latency", row.get("latency_ms_p50"), self.max_latency_ms, below=False)
        check("size", row.get("size_kb"), self.max_size_kb, below=False)
        return out

    def for_run(self, df: pd.DataFrame, metric: QualityMetric) -> "Constraints":
        """These bounds as they apply to a run measured in ``metric``. Bounds in another metric hold when the
        run measured that one too (a causal LM's zero-shot accuracy); otherwise they cannot be met, and the
        run's own metric stands in with its default tolerance. No bound at all: the default tolerance."""
        bounds = self
        if self.metric is not None and self.metric != metric.name and (self.min_quality is not None
                                                                        or self.max_loss is not None):
            other = get_metric(self.metric)
            measured = other.column in df.columns and pd.to_numeric(df[other.column], errors="coerce").notna().any()
            if not measured:
                bounds = Constraints(max_loss=metric.default_tolerance, max_latency_ms=self.max_latency_ms,
                                     max_size_kb=self.max_size_kb, metric=metric.name)
        if not bounds.any() and not self.unbounded:
            bounds = Constraints(max_loss=metric.default_tolerance, metric=metric.name)
        if bounds.metric is None:  # in the run's metric: the default tolerance is that metric's
            bounds = Constraints(bounds.min_quality, bounds.max_loss, bounds.max_latency_ms, bounds.max_size_kb,
                                 metric=metric.name, default_loss=bounds.default_loss, unbounded=bounds.unbounded)
        return bounds


@dataclass
class Recommendation:
    """The point to ship under some constraints: ``point`` (a row of the points table as a dict, None when
    no point meets them), ``reason`` (one or two plain sentences), how many points met the constraints,
    ``alternatives`` (up to two other feasible points: the best on quality and the fastest) and, when
    nothing meets them, ``closest`` (the point that misses by least) with what it misses."""

    constraints: Constraints
    point: dict | None
    reason: str
    feasible: int
    total: int
    alternatives: list[dict] = field(default_factory=list)
    closest: dict | None = None
    misses: dict[str, float] = field(default_factory=dict)

    @property
    def point_id(self) -> int | None:
        return int(self.point["point_id"]) if self.point is not None else None

    def to_dict(self) -> dict:
        quality = [f for m in METRICS.values() for f in (m.column, m.change_column)]

        def small(row):  # NaN (a metric this kind does not measure) becomes null
            return None if row is None else {k: (None if isinstance(row.get(k), float) and row.get(k) != row.get(k)
                                                 else row.get(k)) for k in (
                "point_id", "label", *quality, "latency_ms_p50", "size_kb", "speedup", "compression")}
        return {"recommended_point_id": self.point_id, "reason": self.reason, "constraints": asdict(self.constraints),
                "feasible": self.feasible, "total": self.total, "recommended": small(self.point),
                "alternatives": [small(a) for a in self.alternatives], "closest": small(self.closest),
                "misses": self.misses}


def _gain(pts: pd.DataFrame) -> pd.Series:
    """Size x speed gain against the reference; without a reference, 1 / (latency x size)."""
    gain = pts["compression"] * pts["speedup"]
    if gain.notna().any():
        return gain.fillna(0.0)
    return 1.0 / (pts["latency_ms_p50"] * pts["size_kb"])


# The rule every door recommends by, named in the reason it gives. (A point slower AND bigger than another
# feasible point that is as good never comes first anyway: it loses on gain and on quality alike.)
SHIP_RULE = "never a point slower than dense fp32 while a point that is not slower meets the bounds"


def shippable(feasible: pd.DataFrame) -> pd.DataFrame:
    """The points worth shipping among those that meet the bounds (``SHIP_RULE``): a point slower than the
    reference only when no feasible point is as fast."""
    not_slower = feasible[feasible["speedup"] >= 1.0]  # NaN without a reference: the check has nothing to say
    return not_slower if len(not_slower) else feasible


def _figures(row: Mapping, kind: KindInfo, metric: QualityMetric) -> str:
    """'accuracy 96.90% (-0.10 points vs dense fp32), latency p50 0.600 ms, size 14.6 KB'."""
    first = f"{metric.label} {metric.format(row.get(metric.column))}"
    change = row.get(metric.change_column)
    if finite(change):
        note = "" if metric.higher_is_better else "; lower is better"
        first += f" ({metric.change_text(change, 2)} vs dense fp32{note})"
    return ", ".join([first, f"{_latency_name(kind)} {duration_text(row['latency_ms_p50'])}",
                      f"size {size_text(float(row['size_kb']) * BYTES_PER_KB)}"])


def _gains(row: Mapping) -> str:
    if not (finite(row.get("compression")) and finite(row.get("speedup"))):
        return ""
    speed = (f"{ratio_text(row['speedup'])} faster" if row["speedup"] >= 1 else
             f"{ratio_text(1 / row['speedup'])} SLOWER")
    return f" ({ratio_text(row['compression'])} smaller and {speed} than dense fp32)"


def recommend(df: pd.DataFrame, constraints: Constraints | None = None) -> Recommendation:
    """The point to ship: among the measured points that meet every bound of ``constraints``,

    - with a quality bound: the largest size x speed gain against the reference (the quality bound
      already says how much quality may be spent; ties go to the better quality);
    - without one: the best quality (ties go to the larger gain).

    With no constraints at all it behaves as a loss of at most the metric's default tolerance (1 accuracy
    point; perplexity 5% above the reference). Nothing feasible: ``point`` is None and ``closest`` is the
    point with the smallest summed relative miss.
    """
    kind, metric = _kind_metric(df)
    constraints = (constraints or Constraints()).for_run(df, metric)
    pts = shippable_points(df)
    pts = pts[pts[metric.column].map(finite) & pts["latency_ms_p50"].map(finite) & pts["size_kb"].map(finite)] \
        if len(pts) else pts
    total = len(pts)
    if total == 0:
        return Recommendation(constraints, None, "No measured points yet.", 0, 0)
    latency = _latency_name(kind)
    rows = pts.to_dict("records")
    misses = [constraints.misses(r) for r in rows]
    feasible = pts[[not m for m in misses]]
    if feasible.empty:
        i = min(range(total), key=lambda k: (sum(misses[k].values()), -metric.goodness(rows[k][metric.column])))
        near = rows[i]
        what = ", ".join(f"{name} {over_bound_text(share)}" for name, share in misses[i].items())
        reason = (f"No point meets {constraints.describe(latency)}. The closest is #{int(near['point_id'])} "
                  f"({near.get('label')}): {_figures(near, kind, metric)}; it misses {what}. Relax a bound or sweep "
                  "more settings.")
        return Recommendation(constraints, None, reason, 0, total, closest=near, misses=misses[i])
    kept = shippable(feasible)
    gain = _gain(kept)
    good = kept[metric.column].map(metric.goodness)  # higher is better, whichever way the metric runs
    if constraints.quality_bound:
        order = sorted(kept.index, key=lambda k: (-gain[k], -good[k], kept.at[k, "point_id"]))
        why = "the largest size × speed gain"
    else:
        order = sorted(kept.index, key=lambda k: (-good[k], -gain[k], kept.at[k, "point_id"]))
        why = metric.best_phrase
    best = kept.loc[order[0]].to_dict()
    passed = "" if len(kept) == len(feasible) else f" ({len(feasible) - len(kept)} set aside by the rule: {SHIP_RULE})"
    reason = (f"Ship point #{int(best['point_id'])} ({best.get('label')}): {_figures(best, kind, metric)}"
              f"{_gains(best)}. Of the {len(feasible)} of {total} measured points that meet "
              f"{constraints.describe(latency)}{passed}, it has {why}.") if constraints.any() else (
        f"Ship point #{int(best['point_id'])} ({best.get('label')}): {_figures(best, kind, metric)}"
        f"{_gains(best)}. No bound is set: of the {total} measured points{passed}, it has {why}.")
    alternatives = []  # trade-offs beside it (more quality, more speed), by the same rule
    others = kept.drop(index=order[0])
    if len(others):
        rank = others[metric.column].map(metric.goodness)
        best_quality = others.loc[sorted(others.index, key=lambda k: -rank[k])[0]].to_dict()
        alternatives.append(best_quality)
        rest = others.drop(index=[k for k in others.index if others.at[k, "point_id"] == best_quality["point_id"]])
        if len(rest):
            fastest = rest.loc[rest["latency_ms_p50"].astype(float).idxmin()].to_dict()
            alternatives.append(fastest)
    return Recommendation(constraints, best, reason, len(feasible), total, alternatives=alternatives)


def compare_points(df: pd.DataFrame, point_ids) -> pd.DataFrame:
    """Two to four points side by side: one column per point, one row per figure, readable values."""
    ids = [int(p) for p in point_ids]
    if not 2 <= len(ids) <= 4:
        raise ConfigError(f"compare two to four points, not {len(ids)}")
    rows = {int(r["point_id"]): r for r in df.to_dict("records")}
    missing = [p for p in ids if p not in rows]
    if missing:
        raise ConfigError(f"point(s) {', '.join(map(str, missing))} are not in this run")
    kind, metric = _kind_metric(df)
    fields = [("configuration", lambda r: r.get("label")),
              (metric.heading, lambda r: _num(r.get(metric.column), metric.scale, metric.fmt)),
              (f"Δ {metric.label} vs dense fp32 ({metric.change_unit})",
               lambda r: _num(r.get(metric.change_column), 1, "{:+.2f}")),
              (kind.latency_heading, lambda r: _num(r.get("latency_ms_p50"), 1, "{:.3f}")),
              *((c.heading, lambda r, c=c: _num(r.get(c.name), c.scale, c.fmt)) for c in kind.extra_columns),
              ("speed-up vs dense fp32", lambda r: _num(r.get("speedup"), 1, "{:.2f}x")),
              ("size (KB)", lambda r: _num(r.get("size_kb"), 1, "{:.1f}")),
              ("smaller vs dense fp32", lambda r: _num(r.get("compression"), 1, "{:.2f}x")),
              ("prune", lambda r: f"{r.get('prune_method')} {_num(r.get('prune_ratio'), 1, '{:.2f}')}"),
              ("fine-tune steps", lambda r: _num(r.get("finetune_steps"), 1, "{:.0f}")),
              ("bits", lambda r: _num(r.get("bits"), 1, "{:.0f}")),
              ("execution", lambda r: r.get("execution")),
              (f"on the {metric.label}/latency/size front", lambda r: "yes" if r.get("pareto") else "no")]
    table = {f"#{p}": [fn(rows[p]) for _, fn in fields] for p in ids}
    return pd.DataFrame(table, index=[name for name, _ in fields])


def _num(value, scale, fmt) -> str:
    return fmt.format(float(value) * scale) if finite(value) else "–"


# An alternative beside the chosen point may be this many default tolerances worse than it (5 accuracy
# points; 25% higher perplexity): close enough to be a real choice.
ALTERNATIVE_WINDOW = 5.0


def alternatives(df: pd.DataFrame, point_id: int, n: int = 2) -> list[dict]:
    """Two points to set beside a chosen one: the other point with the best quality, and the fastest other
    point on the front within ``ALTERNATIVE_WINDOW`` default tolerances of the chosen one's quality
    (distinct, never the chosen point or the reference)."""
    pts = shippable_points(df)
    if pts.empty:
        return []
    _, metric = _kind_metric(df)
    others = pts[(pts["point_id"] != point_id) & ~pts["is_reference"].astype(bool)]
    others = others[others[metric.column].map(finite) & others["latency_ms_p50"].map(finite)]
    out: list[dict] = []
    if len(others):
        out.append(others.loc[others[metric.column].map(metric.goodness).idxmax()].to_dict())
        chosen = pts[pts["point_id"] == point_id]
        near = others["point_id"] == others["point_id"]  # every point when the chosen one has no value
        if len(chosen) and finite(chosen[metric.column].iloc[0]):
            value = float(chosen[metric.column].iloc[0])
            worse = metric.loss(metric.change(others[metric.column].astype(float), value))
            near = worse <= ALTERNATIVE_WINDOW * metric.default_tolerance + 1e-9
        front = others[others["pareto"].astype(bool) & (others["point_id"] != out[0]["point_id"]) & near]
        if len(front):
            out.append(front.loc[front["latency_ms_p50"].astype(float).idxmin()].to_dict())
    return out[:n]
