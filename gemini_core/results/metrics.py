"""Quality metrics as objects: what a model kind's quality figure is and how to read it.

A kind names its metric (``KindInfo.quality_metric``); everything that shows, ranks or compares quality
(the points table, the Pareto front, the recommendation, the charts, the report) asks the metric instead
of assuming "accuracy, higher is better". A ``QualityMetric`` says:

- where the value is (``column``), which way is better (``direction``: "max" or "min") and how it is
  shown (``scale``, ``unit``, ``fmt``; accuracy is stored 0-1 and shown in percent);
- the unit of a change against the reference (``change_unit``): accuracy points (a difference), or percent
  of the reference (a ratio, for perplexity), and the column of the points table that holds it;
- its 95% interval (``interval``: Wilson from the test size for accuracy, a block bootstrap over the
  evaluation windows for perplexity) and the paired comparison with the reference on the same examples
  (``paired``: a bootstrap difference with McNemar for accuracy, a block-bootstrap ratio for perplexity);
- the "no measurable change" rule: the paired interval contains the statistic's null (0 for a difference,
  1 for a ratio);
- the recommendation's bound when the user gives none (``default_tolerance``, in the change unit).

These are definitions of statistics, not kind code: a kind picks one by name. A ranking metric (a bootstrap
over users) fits the same interface: its own ``interval`` and ``paired`` functions and the fields below.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from gemini_core.errors import GeminiError
from gemini_core.kinds.registry import KindInfo, kind_of_records
from gemini_core.results.stats import (
    NO_CHANGE,
    Z95,
    bootstrap_mean_interval,
    paired_difference,
    paired_mean_difference,
    paired_perplexity_ratio,
    parse_bits,
    perplexity_interval,
    wilson_interval,
)


def finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _interval(value) -> tuple[float, float] | None:
    """A stored [low, high] as a tuple of floats, None when it is not one."""
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) == 2 and all(finite(v) for v in value):
        return float(value[0]), float(value[1])
    return None


@dataclass(frozen=True)
class Paired:
    """A point against a reference on the same evaluation data: the statistic (a difference or a ratio, in
    stored units), its 95% interval, the statistic's value for "no change" (``null``) and the number of
    paired units (test examples, windows, users)."""

    estimate: float
    ci95: tuple[float, float]
    null: float
    n: int
    details: dict = field(default_factory=dict, compare=False)

    @property
    def measurable(self) -> bool:
        """The "no measurable change" rule: an interval containing the null value says nothing changed (and
        an interval that could not be computed says nothing either)."""
        if not all(finite(v) for v in self.ci95):
            return False
        return not (self.ci95[0] <= self.null <= self.ci95[1])


@dataclass(frozen=True)
class QualityMetric:
    name: str  # registry key, named by ``KindInfo.quality_metric``
    column: str  # the record / table field holding the value
    label: str  # in sentences and headings: "accuracy"
    direction: str  # "max": higher is better; "min": lower is better
    change_column: str  # the points table's change against the reference, in ``change_unit``
    change_unit: str  # "points" (a difference of shown values) or "%" (percent of the reference)
    loss_name: str  # a change for the worse, named: "accuracy loss", "perplexity increase"
    best_phrase: str  # "the most accurate": what the recommendation says of the best point
    default_tolerance: float  # the recommendation's bound on the loss when none is given, in change_unit
    interval_fn: Callable[[Mapping], tuple[float, float] | None]  # a record's 95% interval, stored units
    interval_method: str  # how that interval is made ("Wilson", "block bootstrap"), for headings
    paired_fn: Callable[[Mapping, Mapping], Paired | None]  # point vs reference on the same data
    paired_method: str  # how the paired interval is made, for sentences that state it
    sample_name: str  # what a paired n counts: "test examples", "evaluation windows"
    sample_fn: Callable[[Mapping], int | None]  # how many of those a record's value was measured on
    phrases: tuple[str, str, str]  # a change in a sentence: worse, better ("{}": its size), unchanged
    unit: str = ""  # of the shown value ("%" for accuracy shown in percent)
    scale: float = 1.0  # stored -> shown
    fmt: str = "{:.3f}"  # a shown value in tables
    brief_fmt: str = "{:.3f}"  # a shown value in sentences and interval texts
    axis_label: str = ""  # the axis title's name when it is not ``label`` ("test accuracy")
    log_axis: bool = False  # values spread over orders of magnitude (perplexity)
    display_range: tuple[float, float] | None = None  # shown values are bounded (accuracy 0-100)
    protocol: tuple[tuple[str, str], ...] = ()  # (record field, name): how the value was measured
    margin_fn: Callable[[float, float], float] | None = None  # an estimated half-width from a sample size
    noise_fn: Callable[[Mapping, Mapping], bool] | None = None  # two points not told apart (the front's ties)
    raw_fields: tuple[str, ...] = ()  # per-example / per-window data kept to pair points (not for tables)

    def __post_init__(self):
        if self.direction not in ("max", "min"):
            raise ValueError(f"metric {self.name!r}: direction must be 'max' or 'min', not {self.direction!r}")

    # -- direction --------------------------------------------------------------------------------
    @property
    def higher_is_better(self) -> bool:
        return self.direction == "max"

    def goodness(self, value) -> float:
        """The value turned so that higher is better (for sorting); nan when missing."""
        v = float(value) if finite(value) else float("nan")
        return v if self.higher_is_better else -v

    def better(self, a, b) -> bool:
        """Whether value ``a`` is strictly better than ``b``."""
        return finite(a) and finite(b) and self.goodness(a) > self.goodness(b)

    # -- showing values ------------------------------------------------------------------------------
    def shown(self, value) -> float:
        return float(value) * self.scale if finite(value) else float("nan")

    def format(self, value, brief: bool = False) -> str:
        """'96.90%' or '12.345'; '–' when missing."""
        if not finite(value):
            return "–"
        return (self.brief_fmt if brief else self.fmt).format(self.shown(value)) + self.unit

    @property
    def heading(self) -> str:
        """A column heading: 'accuracy (%)', 'perplexity (lower is better)' (higher is what people assume, so
        only lower is said)."""
        parts = [self.unit] if self.unit else []
        if not self.higher_is_better:
            parts.append("lower is better")
        return f"{self.label} ({', '.join(parts)})" if parts else self.label

    @property
    def axis_title(self) -> str:
        """An axis title with the unit and the direction: 'test accuracy (%, higher is better)'."""
        parts = [self.unit] if self.unit else []
        if self.log_axis:
            parts.append("log scale")
        parts.append(f"{'higher' if self.higher_is_better else 'lower'} is better")
        return f"{self.axis_label or self.label} ({', '.join(parts)})"

    @property
    def change_heading(self) -> str:
        return f"Δ {self.label} vs reference ({self.change_unit})"

    def change_phrase(self, change) -> str:
        """The change in a sentence ('loses 0.5 accuracy points', 'raises perplexity by 1.2%'), one decimal."""
        if not finite(change):
            return f"has an unknown {self.label}"
        loss = round(float(self.loss(change)), 1)
        worse, better, same = self.phrases
        return same if loss == 0 else (worse if loss > 0 else better).format(f"{abs(loss):.1f}")

    def change_text(self, change, digits: int = 1) -> str:
        """'+0.7 points', '+1.2%'."""
        if not finite(change):
            return "–"
        sep = "" if self.change_unit == "%" else " "
        return f"{float(change):+.{digits}f}{sep}{self.change_unit}"

    # -- changes against a reference -------------------------------------------------------------------
    @property
    def relative(self) -> bool:
        """A change in percent of the reference (a ratio) rather than a difference of shown values."""
        return self.change_unit == "%"

    def change(self, value, reference):
        """``value`` against ``reference`` in the change unit (works on numbers and pandas Series)."""
        if self.relative:
            return (value / reference - 1.0) * 100.0
        return (value - reference) * self.scale

    def loss(self, change):
        """How much worse a change is, in the change unit (negative: better)."""
        return -change if self.higher_is_better else change

    @property
    def null(self) -> float:
        """The paired statistic's value for "no change": a ratio's 1, a difference's 0."""
        return 1.0 if self.relative else 0.0

    def statistic_to_change(self, statistic: float) -> float:
        """A paired statistic (a difference or a ratio, stored units) in the change unit."""
        return (statistic - 1.0) * 100.0 if self.relative else statistic * self.scale

    # -- uncertainty -----------------------------------------------------------------------------------
    def interval(self, record: Mapping) -> tuple[float, float] | None:
        """The value's 95% interval in stored units; None when the record cannot give one."""
        return self.interval_fn(record)

    def interval_text(self, record: Mapping) -> str:
        """'95.1-98.2% (n=360)', or '-' without an interval."""
        ci = self.interval(record)
        if ci is None:
            return "-"
        n = self.sample_size(record)
        lo, hi = (self.brief_fmt.format(v * self.scale) for v in ci)
        return f"{lo}-{hi}{self.unit}" + (f" (n={n})" if n is not None else "")

    def sample_size(self, record: Mapping) -> int | None:
        """How many units the value was measured on (test examples, windows), when the record says."""
        n = self.sample_fn(record)
        return int(n) if finite(n) else None

    def paired(self, point: Mapping, reference: Mapping) -> Paired | None:
        """``point`` against ``reference`` on the same evaluation data; None when the records cannot be paired."""
        if point is None or reference is None:
            return None
        return self.paired_fn(point, reference)

    def no_measurable_change(self, paired: Paired) -> bool:
        return not paired.measurable

    def within_noise(self, a: Mapping, b: Mapping) -> bool:
        """Whether two points' values are not told apart by their evaluation data (only equal values tie
        when the metric cannot say)."""
        return bool(self.noise_fn and self.noise_fn(a, b))

    def margin(self, value, n) -> float:
        """Half-width of an estimated 95% interval from the sample size alone, in the change unit; nan
        when the metric has no such estimate."""
        return self.margin_fn(value, n) if self.margin_fn else float("nan")

    def describe_paired(self, paired: Paired | None) -> str:
        """'+0.7 points [-1.1, +2.6]' or 'no measurable change (+0.4 points [-0.7, +1.5])'; '-' for None."""
        if paired is None or not all(finite(v) for v in (paired.estimate, *paired.ci95)):
            return "-"
        lo, hi = (self.statistic_to_change(v) for v in paired.ci95)
        unit = self.change_text(self.statistic_to_change(paired.estimate))
        text = f"{unit} [{lo:+.1f}, {hi:+.1f}]"
        return f"{NO_CHANGE} ({text})" if self.no_measurable_change(paired) else text


METRICS: dict[str, QualityMetric] = {}


def register_metric(metric: QualityMetric) -> QualityMetric:
    METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> QualityMetric:
    if name not in METRICS:
        raise GeminiError(f"unknown quality metric {name!r}; this version knows {', '.join(sorted(METRICS))}")
    return METRICS[name]


def metric_for_column(column: str) -> QualityMetric | None:
    """The metric whose value is in ``column`` (None for latency, size and the like)."""
    return next((m for m in METRICS.values() if m.column == column), None)


def kind_of_rows(records) -> KindInfo:
    """The kind of a run's records, points table or table rows. A table's ``kind`` column holds NaN where
    older records had none; that is the default kind, as a missing field is."""
    if hasattr(records, "columns"):
        values = records["kind"].tolist() if "kind" in records.columns else []
    else:
        values = [(r if r is not None else {}).get("kind") for r in records]
    return kind_of_records([{"kind": v if isinstance(v, str) and v else None} for v in values])


def metric_of(records) -> QualityMetric:
    """The quality metric of a run's records or points table (its kind's)."""
    return get_metric(kind_of_rows(records).quality_metric)


# -- accuracy: the share of test examples right (stored 0-1, shown in percent) ---------------------------
@lru_cache(maxsize=1024)
def _paired_bits(bits: str, ref_bits: str) -> dict:
    """The paired bootstrap of two stored correctness strings (pages redraw often; the answer never changes)."""
    return paired_difference(parse_bits(bits), parse_bits(ref_bits))


@lru_cache(maxsize=512)
def _bits_array(text: str) -> np.ndarray:
    return np.asarray(parse_bits(text), dtype=np.float64)


def _bits(value) -> np.ndarray | None:
    return _bits_array(value) if isinstance(value, str) and value else None


def accuracy_interval(record: Mapping) -> tuple[float, float] | None:
    """The stored Wilson interval; else Wilson from the test size and the examples right."""
    stored = _interval(record.get("accuracy_ci95"))
    if stored is not None:
        return stored
    n, acc, bits = record.get("test_n"), record.get("accuracy"), record.get("test_correct")
    if not finite(n) or int(n) <= 0:
        return None
    n = int(n)
    if isinstance(bits, str) and len(bits) == n:
        return wilson_interval(bits.count("1"), n)
    return wilson_interval(round(float(acc) * n), n) if finite(acc) else None


def accuracy_paired(point: Mapping, reference: Mapping) -> Paired | None:
    """Paired bootstrap of the difference on the same test examples, with McNemar's exact p-value."""
    bits, ref_bits = point.get("test_correct"), reference.get("test_correct")
    if not isinstance(bits, str) or not isinstance(ref_bits, str) or not bits or len(bits) != len(ref_bits):
        return None
    found = _paired_bits(bits, ref_bits)
    return Paired(found["accuracy_delta"], tuple(found["accuracy_delta_ci95"]), 0.0, found["paired_n"],
                  {k: found[k] for k in ("mcnemar_p", "baseline_only_right", "point_only_right")})


def accuracy_within_noise(a: Mapping, b: Mapping) -> bool:
    """Whether two points' accuracies are not told apart by their test set.

    With per-example correctness on the same examples (``test_correct``): a paired test, the mean
    difference within 1.96 standard errors (a normal approximation: the front compares every pair, so
    no bootstrap here). Without: their 95% intervals overlap. Neither: only equal values are ties.
    """
    bits_a, bits_b = _bits(a.get("test_correct")), _bits(b.get("test_correct"))
    if bits_a is not None and bits_b is not None and len(bits_a) == len(bits_b) and len(bits_a):
        diff = bits_a - bits_b
        se = math.sqrt(max(float((diff ** 2).mean() - diff.mean() ** 2), 0.0) / len(diff))
        return abs(float(diff.mean())) <= Z95 * se
    return _overlap(_interval(a.get("accuracy_ci95")), _interval(b.get("accuracy_ci95")))


def binomial_margin_pts(accuracy, n_test) -> float:
    """Half-width of the 95% interval of an accuracy measured on ``n_test`` examples, in points (normal
    approximation of the binomial: 1.96 * sqrt(p (1 - p) / n)); NaN without a test-set size."""
    if not (finite(accuracy) and finite(n_test) and float(n_test) > 0):
        return float("nan")
    p, n = float(accuracy), float(n_test)
    return 196.0 * math.sqrt(max(p * (1 - p), 1.0 / n) / n)  # never 0: at least one error could happen


def _overlap(a, b) -> bool:
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


ACCURACY = register_metric(QualityMetric(
    name="accuracy", column="accuracy", label="accuracy", direction="max", unit="%", scale=100.0,
    fmt="{:.2f}", brief_fmt="{:.1f}", axis_label="test accuracy", display_range=(0.0, 100.0),
    change_column="accuracy_delta_pts", change_unit="points", loss_name="accuracy loss",
    best_phrase="the most accurate", default_tolerance=1.0, interval_fn=accuracy_interval,
    paired_fn=accuracy_paired, sample_name="test examples", sample_fn=lambda r: r.get("test_n"),
    interval_method="Wilson",
    phrases=("loses {} accuracy points", "gains {} accuracy points", "loses no accuracy"),
    paired_method="paired bootstrap",
    margin_fn=binomial_margin_pts, noise_fn=accuracy_within_noise, raw_fields=("test_correct",)))


# -- perplexity: exp(mean negative log-likelihood per token) on held-out text, lower is better -----------
def _windows(record: Mapping) -> tuple[list, list] | None:
    nll, tokens = record.get("window_nll"), record.get("window_tokens")
    if isinstance(nll, (list, tuple)) and isinstance(tokens, (list, tuple)) and len(nll) == len(tokens) and nll:
        return list(nll), list(tokens)
    return None


@lru_cache(maxsize=512)
def _perplexity_interval(nll: tuple, tokens: tuple) -> tuple[float, float] | None:
    low, high = perplexity_interval(nll, tokens)
    return (low, high) if finite(low) and finite(high) else None


@lru_cache(maxsize=1024)
def _paired_windows(nll: tuple, ref_nll: tuple, tokens: tuple) -> dict:
    return paired_perplexity_ratio(nll, ref_nll, tokens)


def perplexity_window_interval(record: Mapping) -> tuple[float, float] | None:
    """A block bootstrap over the evaluation windows when the record keeps each window's loss."""
    windows = _windows(record)
    return _perplexity_interval(tuple(windows[0]), tuple(windows[1])) if windows else None


def perplexity_paired(point: Mapping, reference: Mapping) -> Paired | None:
    """The paired ratio point / reference over the same windows (same token counts), block bootstrap."""
    a, b = _windows(point), _windows(reference)
    if a is None or b is None or list(a[1]) != list(b[1]):
        return None
    found = _paired_windows(tuple(a[0]), tuple(b[0]), tuple(a[1]))
    return Paired(found["ratio"], tuple(found["ratio_ci95"]), 1.0, found["paired_n"])


def perplexity_within_noise(a: Mapping, b: Mapping) -> bool:
    paired = perplexity_paired(a, b)
    if paired is not None:
        return not paired.measurable
    return _overlap(perplexity_window_interval(a), perplexity_window_interval(b))


PERPLEXITY = register_metric(QualityMetric(
    name="perplexity", column="perplexity", label="perplexity", direction="min", fmt="{:.3f}",
    brief_fmt="{:.3f}", log_axis=True, change_column="perplexity_increase_pct", change_unit="%",
    loss_name="perplexity increase", best_phrase="the lowest perplexity", default_tolerance=5.0,
    interval_fn=perplexity_window_interval, paired_fn=perplexity_paired, sample_name="evaluation windows",
    interval_method="block bootstrap",
    phrases=("raises perplexity by {}%", "lowers perplexity by {}%", "leaves perplexity unchanged"),
    sample_fn=lambda r: len(r["window_tokens"]) if isinstance(r.get("window_tokens"), (list, tuple)) else None,
    paired_method="paired block bootstrap over evaluation windows",
    protocol=(("context_len", "context"), ("stride", "stride"), ("tokens_scored", "tokens scored")),
    noise_fn=perplexity_within_noise, raw_fields=("window_nll", "window_tokens")))


# -- NDCG@10: ranking quality of a recommender, one held-out item per user ranked among 99 sampled items ------
# The mean over users of 1 / log2(rank + 2) when the held-out item is in the top 10 (rank 0-based), else 0;
# stored 0-1 and shown in percent like accuracy. The record keeps each user's value (``user_ndcg_at_10``, in
# the evaluation's user order) so that two points evaluated on the same users pair user by user. The other
# per-user lists a recommender record keeps are named here too, so that tables and JSON lines drop them all.
RANKING_USER_FIELDS = ("user_ndcg_at_10", "user_hr_at_10", "user_auc", "user_recall_at_20", "user_ndcg_at_20")


def _user_values(record: Mapping, field_name: str = "user_ndcg_at_10") -> tuple | None:
    values = record.get(field_name)
    if isinstance(values, (list, tuple, np.ndarray)) and len(values) and all(finite(v) for v in values):
        return tuple(float(v) for v in values)
    return None


@lru_cache(maxsize=512)
def _mean_interval(values: tuple) -> tuple[float, float] | None:
    low, high = bootstrap_mean_interval(values)
    return (low, high) if finite(low) and finite(high) else None


@lru_cache(maxsize=1024)
def _paired_users(values: tuple, ref_values: tuple) -> dict:
    return paired_mean_difference(values, ref_values)


def _same_users(point: Mapping, reference: Mapping) -> bool:
    """Whether two records were evaluated on the same users, held-out items and negatives: the evaluation's key
    when both records carry one, else only the number of users can be checked."""
    key, ref_key = point.get("ranking_eval_key"), reference.get("ranking_eval_key")
    return key is None or ref_key is None or key == ref_key


def ndcg_interval(record: Mapping) -> tuple[float, float] | None:
    """The stored interval; else a bootstrap over the record's users."""
    stored = _interval(record.get("ndcg_at_10_ci95"))
    if stored is not None:
        return stored
    values = _user_values(record)
    return _mean_interval(values) if values else None


def ndcg_paired(point: Mapping, reference: Mapping) -> Paired | None:
    """The difference point - reference in mean NDCG@10 over the same users, paired bootstrap over users."""
    values, ref_values = _user_values(point), _user_values(reference)
    if values is None or ref_values is None or len(values) != len(ref_values) or not _same_users(point, reference):
        return None
    found = _paired_users(values, ref_values)
    return Paired(found["delta"], tuple(found["delta_ci95"]), 0.0, found["paired_n"])


def ndcg_within_noise(a: Mapping, b: Mapping) -> bool:
    """As accuracy's: with per-user values on the same users, the mean difference within 1.96 standard errors
    (a normal approximation: the front compares every pair); without, overlapping intervals."""
    values, other = _user_values(a), _user_values(b)
    if values is not None and other is not None and len(values) == len(other) and _same_users(a, b):
        diff = np.asarray(values) - np.asarray(other)
        se = math.sqrt(max(float((diff ** 2).mean() - diff.mean() ** 2), 0.0) / len(diff))
        return abs(float(diff.mean())) <= Z95 * se
    return _overlap(ndcg_interval(a), ndcg_interval(b))


def _users_measured(record: Mapping) -> int | None:
    values = record.get("user_ndcg_at_10")
    return len(values) if isinstance(values, (list, tuple)) and values else record.get("users_n")


NDCG_AT_10 = register_metric(QualityMetric(
    name="ndcg@10", column="ndcg_at_10", label="NDCG@10", direction="max", unit="%", scale=100.0,
    fmt="{:.2f}", brief_fmt="{:.1f}", axis_label="NDCG@10, sampled",
    display_range=(0.0, 100.0), change_column="ndcg_at_10_delta_pts", change_unit="points",
    loss_name="NDCG@10 loss", best_phrase="the best-ranking", default_tolerance=1.0,
    interval_fn=ndcg_interval, interval_method="bootstrap over users", paired_fn=ndcg_paired,
    paired_method="paired bootstrap over users", sample_name="users", sample_fn=_users_measured,
    phrases=("loses {} NDCG@10 points", "gains {} NDCG@10 points", "keeps its NDCG@10"),
    protocol=(("negatives_per_user", "sampled negatives per user"), ("users_n", "users")),
    # NDCG per user lies in [0, 1], so its variance is at most mean * (1 - mean): the binomial margin bounds it
    margin_fn=binomial_margin_pts, noise_fn=ndcg_within_noise, raw_fields=RANKING_USER_FIELDS))
