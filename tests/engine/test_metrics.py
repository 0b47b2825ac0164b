"""Quality metrics as objects: direction, shown values, intervals, the paired difference against a reference
(accuracy checked by hand; perplexity's block bootstrap over windows) and the "no measurable change" rule."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from gemini_core.errors import GeminiError
from gemini_core.results import metrics
from gemini_core.results.metrics import (
    ACCURACY,
    PERPLEXITY,
    Paired,
    QualityMetric,
    get_metric,
    metric_for_column,
    metric_of,
    register_metric,
)
from gemini_core.results.stats import NO_CHANGE, mcnemar_exact_p, paired_perplexity_ratio, perplexity_interval


def test_the_registry_names_each_metric_and_refuses_an_unknown_one():
    assert get_metric("accuracy") is ACCURACY and get_metric("perplexity") is PERPLEXITY
    assert metric_for_column("perplexity") is PERPLEXITY and metric_for_column("latency_ms_p50") is None
    with pytest.raises(GeminiError, match="unknown quality metric 'ndcg'"):
        get_metric("ndcg")
    with pytest.raises(ValueError, match="direction"):
        dataclasses.replace(ACCURACY, name="bad", direction="up")


def test_a_run_reads_its_metric_through_its_kind():
    assert metric_of([{"accuracy": 0.9}]) is ACCURACY  # records written before the kind field: classifiers
    assert metric_of([{"kind": "llm", "perplexity": 9.0}]) is PERPLEXITY
    assert metric_of([]) is ACCURACY
    # a table whose older rows have no kind holds NaN there: still the default kind
    assert metric_of(pd.DataFrame([{"kind": "classifier"}, {"accuracy": 0.5}])) is ACCURACY
    assert metric_of(pd.DataFrame([{"kind": "llm"}])) is PERPLEXITY


def test_direction_decides_better_and_the_sort_key():
    assert ACCURACY.better(0.91, 0.90) and not ACCURACY.better(0.90, 0.91)
    assert PERPLEXITY.better(10.0, 12.0) and not PERPLEXITY.better(12.0, 10.0)
    assert not PERPLEXITY.better(float("nan"), 12.0)
    assert sorted([12.0, 10.0, 11.0], key=PERPLEXITY.goodness, reverse=True) == [10.0, 11.0, 12.0]
    assert sorted([0.8, 0.9, 0.85], key=ACCURACY.goodness, reverse=True) == [0.9, 0.85, 0.8]


def test_changes_are_in_the_metrics_own_unit_and_a_loss_is_the_worse_direction():
    assert ACCURACY.change(0.95, 0.97) == pytest.approx(-2.0)  # points
    assert ACCURACY.loss(ACCURACY.change(0.95, 0.97)) == pytest.approx(2.0)
    assert PERPLEXITY.change(10.5, 10.0) == pytest.approx(5.0)  # percent of the reference
    assert PERPLEXITY.loss(PERPLEXITY.change(10.5, 10.0)) == pytest.approx(5.0)
    assert PERPLEXITY.loss(PERPLEXITY.change(9.5, 10.0)) == pytest.approx(-5.0)  # better: a negative loss
    assert ACCURACY.default_tolerance == 1.0 and PERPLEXITY.default_tolerance == 5.0
    assert ACCURACY.change_text(-0.64) == "-0.6 points" and PERPLEXITY.change_text(1.25, 2) == "+1.25%"
    assert ACCURACY.change_phrase(-0.5) == "loses 0.5 accuracy points" and ACCURACY.change_phrase(0.01) == "loses no accuracy"
    assert PERPLEXITY.change_phrase(1.23) == "raises perplexity by 1.2%"
    assert PERPLEXITY.change_phrase(-2.0) == "lowers perplexity by 2.0%"


def test_headings_say_the_unit_and_axis_titles_the_direction():
    assert ACCURACY.heading == "accuracy (%)" and PERPLEXITY.heading == "perplexity (lower is better)"
    assert ACCURACY.axis_title == "test accuracy (%, higher is better)"
    assert PERPLEXITY.axis_title == "perplexity (log scale, lower is better)"
    assert ACCURACY.format(0.9690) == "96.90%" and PERPLEXITY.format(12.34567) == "12.346"
    assert ACCURACY.format(None) == "–"


def test_accuracy_interval_is_wilson_from_the_test_size():
    # 45 right of 50 (see test_numbers for the hand computation of this interval)
    bits = "1" * 45 + "0" * 5
    low, high = ACCURACY.interval({"accuracy": 0.9, "test_n": 50, "test_correct": bits})
    assert low == pytest.approx(0.871466 - 0.085063, abs=2e-5) and high == pytest.approx(0.871466 + 0.085063, abs=2e-5)
    assert ACCURACY.interval({"accuracy": 0.9, "test_n": 50}) == (low, high)  # from the value when no bits
    assert ACCURACY.interval({"accuracy": 0.9, "accuracy_ci95": [0.1, 0.2], "test_n": 50}) == (0.1, 0.2)  # stored
    assert ACCURACY.interval({"accuracy": 0.9}) is None
    assert ACCURACY.interval_text({"accuracy": 0.9, "test_n": 50}) == "78.6-95.7% (n=50)"


def test_accuracy_paired_difference_matches_the_hand_computation():
    # 10 examples: the reference is right on 8, the point on 7; discordant: the reference alone right on
    # examples 0 and 1, the point alone right on example 9.
    reference = "1111111100"
    point = "0011111101"
    paired = ACCURACY.paired({"test_correct": point}, {"test_correct": reference})
    assert paired.estimate == pytest.approx((7 - 8) / 10) and paired.n == 10 and paired.null == 0.0
    assert paired.details["baseline_only_right"] == 2 and paired.details["point_only_right"] == 1
    assert paired.details["mcnemar_p"] == pytest.approx(mcnemar_exact_p(2, 1)) == pytest.approx(1.0)
    low, high = paired.ci95
    assert low < -0.1 < high and low <= 0.0 <= high  # 10 examples cannot tell -1 example from none
    assert ACCURACY.no_measurable_change(paired)
    assert ACCURACY.describe_paired(paired).startswith(f"{NO_CHANGE} (-10.0 points [")
    # different test sets (or none stored) cannot be paired
    assert ACCURACY.paired({"test_correct": "101"}, {"test_correct": reference}) is None
    assert ACCURACY.paired({}, {"test_correct": reference}) is None


def test_a_large_accuracy_loss_is_measurable():
    n = 2000
    reference = "1" * n
    point = "0" * 200 + "1" * (n - 200)
    paired = ACCURACY.paired({"test_correct": point}, {"test_correct": reference})
    assert paired.estimate == pytest.approx(-0.1) and paired.ci95[1] < 0 and paired.measurable
    assert ACCURACY.statistic_to_change(paired.estimate) == pytest.approx(-10.0)  # points
    assert not ACCURACY.describe_paired(paired).startswith(NO_CHANGE)


def _windows(nll, tokens):
    return {"window_nll": list(nll), "window_tokens": list(tokens), "perplexity": math.exp(sum(nll) / sum(tokens))}


def test_perplexity_interval_is_a_block_bootstrap_over_windows():
    rng = np.random.default_rng(0)
    tokens = [63] * 12
    nll = (rng.normal(2.3, 0.2, 12) * 63).tolist()
    record = _windows(nll, tokens)
    low, high = PERPLEXITY.interval(record)
    assert low < record["perplexity"] < high
    assert (low, high) == perplexity_interval(nll, tokens)  # seeded: the same interval every time
    assert PERPLEXITY.interval({"perplexity": 9.0}) is None  # no windows kept: no interval
    assert PERPLEXITY.interval(_windows(nll[:1], tokens[:1])) is None  # one window says nothing of the spread
    assert PERPLEXITY.interval_text(record).endswith("(n=12)")


def test_identical_windows_give_a_ratio_of_one_and_no_measurable_change():
    rng = np.random.default_rng(1)
    tokens = [63] * 8
    nll = (rng.normal(2.3, 0.3, 8) * 63).tolist()
    paired = PERPLEXITY.paired(_windows(nll, tokens), _windows(nll, tokens))
    assert paired.estimate == pytest.approx(1.0) and paired.null == 1.0 and paired.n == 8
    assert paired.ci95[0] <= 1.0 <= paired.ci95[1] and PERPLEXITY.no_measurable_change(paired)
    assert PERPLEXITY.describe_paired(paired) == f"{NO_CHANGE} (+0.0% [+0.0, +0.0])"


def test_a_uniformly_worse_model_has_a_ratio_interval_above_one():
    rng = np.random.default_rng(2)
    tokens = [63, 63, 63, 63, 63, 40]
    base = (rng.normal(2.3, 0.4, 6) * np.asarray(tokens)).tolist()
    worse = [b + 0.05 * t + abs(rng.normal(0, 0.5)) for b, t in zip(base, tokens)]  # every window worse
    paired = PERPLEXITY.paired(_windows(worse, tokens), _windows(base, tokens))
    expected = math.exp((sum(worse) - sum(base)) / sum(tokens))
    assert paired.estimate == pytest.approx(expected) and paired.estimate > 1.05
    assert paired.ci95[0] > 1.0 and paired.measurable
    assert PERPLEXITY.statistic_to_change(paired.estimate) == pytest.approx((expected - 1) * 100)
    assert not PERPLEXITY.describe_paired(paired).startswith(NO_CHANGE)
    assert paired_perplexity_ratio(worse, base, tokens)["measurable"]
    # other windows (another context length, another text) cannot be paired
    assert PERPLEXITY.paired(_windows(worse, [64] * 6), _windows(base, tokens)) is None


def test_the_no_measurable_change_rule_is_the_interval_holding_the_null():
    assert not Paired(0.01, (-0.01, 0.03), 0.0, 100).measurable
    assert Paired(0.04, (0.01, 0.07), 0.0, 100).measurable
    assert not Paired(1.01, (0.99, 1.03), 1.0, 8).measurable
    assert Paired(1.05, (1.02, 1.09), 1.0, 8).measurable
    assert Paired(0.98, (0.96, 0.99), 1.0, 8).measurable  # better counts as a change too


def test_within_noise_ties_points_the_data_cannot_tell_apart():
    tokens = [63] * 6
    nll = [140.0, 150.0, 145.0, 160.0, 138.0, 152.0]
    same = _windows(nll, tokens)
    # the window-by-window differences go both ways: the paired interval holds 1
    jitter = [1.0, -1.0, 0.5, -0.5, 0.2, -0.3]
    assert PERPLEXITY.within_noise(same, _windows([v + d for v, d in zip(nll, jitter)], tokens))
    assert not PERPLEXITY.within_noise(same, _windows([v + 20 for v in nll], tokens))
    assert not PERPLEXITY.within_noise({"perplexity": 9.0}, {"perplexity": 9.1})  # nothing stored: no tie
    assert ACCURACY.within_noise({"test_correct": "1" * 50}, {"test_correct": "1" * 49 + "0"})


def test_a_ranking_metric_fits_the_same_interface():
    """A metric with its own interval and paired rule (a bootstrap over users, say) registers like the others."""
    ndcg = QualityMetric(
        name="test-ndcg", column="ndcg_at_10", label="NDCG@10", direction="max", change_column="ndcg_delta_pts",
        change_unit="points", loss_name="NDCG loss", best_phrase="the best ranked", default_tolerance=0.5,
        interval_fn=lambda r: None, interval_method="bootstrap over users",
        phrases=("loses {} NDCG points", "gains {} NDCG points", "keeps its NDCG"),
        paired_fn=lambda a, b: Paired(a["ndcg_at_10"] - b["ndcg_at_10"], (-0.1, 0.2), 0.0, 500),
        sample_name="users", sample_fn=lambda r: r.get("users"), paired_method="paired bootstrap over users",
        scale=100.0, unit="%", fmt="{:.1f}")
    register_metric(ndcg)
    try:
        assert get_metric("test-ndcg") is ndcg and ndcg.heading == "NDCG@10 (%)"
        paired = ndcg.paired({"ndcg_at_10": 0.5}, {"ndcg_at_10": 0.45})
        assert ndcg.no_measurable_change(paired) and ndcg.sample_size({"users": 500}) == 500
    finally:
        metrics.METRICS.pop("test-ndcg")


def test_perplexity_keeps_each_windows_loss():
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace

    from gemini_core.kinds.llm import metrics as llm_metrics

    class Uniform(torch.nn.Module):
        def forward(self, input_ids, **_):
            return SimpleNamespace(logits=torch.zeros(*input_ids.shape, 50))

    result = llm_metrics.perplexity(Uniform(), torch.randint(0, 50, (300,)), context_len=64, stride=32)
    assert sum(result["window_tokens"]) == result["tokens_scored"] == 299
    assert sum(result["window_nll"]) / 299 == pytest.approx(math.log(50), rel=1e-5)
    assert len(result["window_nll"]) == len(result["window_tokens"]) > 2
