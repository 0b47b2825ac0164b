"""The uncertainty of quality figures: intervals and paired comparisons on one evaluation set.

- ``wilson_interval(k, n)``: the 95% Wilson score interval of an accuracy of k right out of n.
- ``paired_difference(point, baseline)``: a point's accuracy minus the baseline's on the same test
  examples, with a 95% paired-bootstrap interval (resampling test examples, seeded, so it repeats)
  and McNemar's exact p-value from the discordant pairs. When the interval contains 0 the two
  models are not told apart by this test set: "no measurable change".
- ``perplexity_interval(nll, tokens)`` / ``paired_perplexity_ratio(point, baseline, tokens)``: the same
  for perplexity, from the summed loss of each evaluation window. Neighbouring tokens' losses are not
  independent, so the bootstrap resamples whole windows (a block bootstrap), never single tokens; the
  paired ratio's interval containing 1 is "no measurable change".
- ``bootstrap_mean_interval(values)`` / ``paired_mean_difference(point, reference)``: the same for a
  ranking metric, a mean over users of a per-user value (NDCG@10, a hit); the bootstrap resamples users.

Which statistic a quality figure uses is said by its metric (``results.metrics``).
"""
from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
NO_CHANGE = "no measurable change"


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of ``correct / n`` (nan, nan for n = 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact_p(baseline_only: int, point_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (binomial test at 1/2)."""
    m = baseline_only + point_only
    if m == 0:
        return 1.0
    low = min(baseline_only, point_only)
    tail = sum(math.comb(m, i) for i in range(low + 1)) / 2 ** m
    return min(1.0, 2 * tail)


def paired_difference(point_correct, baseline_correct, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> dict:
    """Point accuracy minus baseline accuracy on the same examples, with its 95% paired-bootstrap interval.

    Both arguments are 0/1 per test example, in the same order. Returns ``accuracy_delta``,
    ``accuracy_delta_ci95`` ([low, high]), the discordant counts, McNemar's exact p-value and
    ``measurable`` (False when the interval contains 0).
    """
    point = np.asarray(point_correct, dtype=np.int8)
    base = np.asarray(baseline_correct, dtype=np.int8)
    if point.shape != base.shape:
        raise ValueError(f"paired comparison needs the same test examples: {point.size} vs {base.size}")
    n = int(point.size)
    if n == 0:
        return {"accuracy_delta": float("nan"), "accuracy_delta_ci95": [float("nan")] * 2, "paired_n": 0,
                "measurable": False}
    diff = point.astype(np.float64) - base
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 250):  # bounded memory for large test sets
        count = min(250, resamples - start)
        index = rng.integers(0, n, size=(count, n))
        means[start:start + count] = diff[index].mean(axis=1)
    low, high = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    baseline_only = int(((base == 1) & (point == 0)).sum())
    point_only = int(((base == 0) & (point == 1)).sum())
    return {"accuracy_delta": float(diff.mean()), "accuracy_delta_ci95": [low, high], "paired_n": n,
            "baseline_only_right": baseline_only, "point_only_right": point_only,
            "mcnemar_p": mcnemar_exact_p(baseline_only, point_only),
            "measurable": not (low <= 0.0 <= high)}


def correct_bits(correct) -> str:
    """0/1 per example as a compact string (how records store it)."""
    return "".join("1" if c else "0" for c in correct)


def parse_bits(bits: str | None) -> list[int] | None:
    return None if not bits else [1 if c == "1" else 0 for c in bits]


def describe_delta(delta: float | None, ci95, unit_scale: float = 100.0) -> str:
    """'+0.7 points [-1.1, +2.6]' or 'no measurable change (+0.4 points [-0.7, +1.5])'."""
    if not isinstance(ci95, (list, tuple)) or len(ci95) != 2:
        return "-"  # failed points and older records (a table fills the gap with NaN)
    try:
        values = [float(delta), float(ci95[0]), float(ci95[1])]
    except (TypeError, ValueError):
        return "-"
    if not all(math.isfinite(v) for v in values):
        return "-"
    text = f"{delta * unit_scale:+.1f} points [{ci95[0] * unit_scale:+.1f}, {ci95[1] * unit_scale:+.1f}]"
    return f"{NO_CHANGE} ({text})" if ci95[0] <= 0.0 <= ci95[1] else text


def _window_arrays(nll, tokens) -> tuple[np.ndarray, np.ndarray]:
    loss = np.asarray(nll, dtype=np.float64).reshape(-1)
    count = np.asarray(tokens, dtype=np.float64).reshape(-1)
    if loss.shape != count.shape:
        raise ValueError(f"one token count per window: {loss.size} losses, {count.size} counts")
    if count.size and (count <= 0).any():
        raise ValueError("every window must score at least one token")
    return loss, count


def _window_resamples(n: int, resamples: int, seed: int):
    """Index sets of ``n`` windows drawn with replacement, in bounded chunks (seeded: the answer repeats)."""
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, 250):
        yield rng.integers(0, n, size=(min(250, resamples - start), n))


def perplexity_interval(window_nll, window_tokens, resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% block-bootstrap interval of exp(sum nll / sum tokens), resampling whole evaluation windows.

    ``window_nll``: each window's summed negative log-likelihood (nats); ``window_tokens``: the tokens it
    scored. (nan, nan) for fewer than two windows: one window says nothing about the spread."""
    loss, count = _window_arrays(window_nll, window_tokens)
    if loss.size < 2:
        return float("nan"), float("nan")
    values = np.concatenate([np.exp(loss[i].sum(axis=1) / count[i].sum(axis=1))
                             for i in _window_resamples(loss.size, resamples, seed)])
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def paired_perplexity_ratio(point_nll, baseline_nll, window_tokens, resamples: int = BOOTSTRAP_RESAMPLES,
                            seed: int = BOOTSTRAP_SEED) -> dict:
    """A point's perplexity over the baseline's on the same evaluation windows, with a 95% paired
    block-bootstrap interval (both models' losses of one window are drawn together).

    Returns ``ratio``, ``ratio_ci95`` ([low, high]), ``paired_n`` (windows) and ``measurable`` (False when
    the interval contains 1)."""
    point, count = _window_arrays(point_nll, window_tokens)
    base, _ = _window_arrays(baseline_nll, window_tokens)
    if point.shape != base.shape:
        raise ValueError(f"paired comparison needs the same windows: {point.size} vs {base.size}")
    n = int(point.size)
    if n == 0:
        return {"ratio": float("nan"), "ratio_ci95": [float("nan")] * 2, "paired_n": 0, "measurable": False}
    diff = point - base
    ratio = math.exp(float(diff.sum() / count.sum()))
    values = np.concatenate([np.exp(diff[i].sum(axis=1) / count[i].sum(axis=1))
                             for i in _window_resamples(n, resamples, seed)])
    low, high = (float(v) for v in np.percentile(values, [2.5, 97.5]))
    return {"ratio": ratio, "ratio_ci95": [low, high], "paired_n": n, "measurable": not (low <= 1.0 <= high)}


# users are drawn as windows are: with replacement, in bounded chunks, seeded
_user_resamples = _window_resamples


def bootstrap_mean_interval(values, resamples: int = BOOTSTRAP_RESAMPLES,
                            seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of per-user values (a ranking metric's NDCG or hit per
    user), resampling users. Users are the independent units: each contributes one held-out interaction.
    (nan, nan) for fewer than two users."""
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if data.size < 2:
        return float("nan"), float("nan")
    means = np.concatenate([data[i].mean(axis=1) for i in _user_resamples(data.size, resamples, seed)])
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def paired_mean_difference(point_values, reference_values, resamples: int = BOOTSTRAP_RESAMPLES,
                           seed: int = BOOTSTRAP_SEED) -> dict:
    """A point's mean per-user value minus the reference's on the same users, with a 95% paired-bootstrap
    interval (one draw of users resamples both models' values together).

    Returns ``delta``, ``delta_ci95`` ([low, high]), ``paired_n`` (users) and ``measurable`` (False when the
    interval contains 0)."""
    point = np.asarray(point_values, dtype=np.float64).reshape(-1)
    base = np.asarray(reference_values, dtype=np.float64).reshape(-1)
    if point.shape != base.shape:
        raise ValueError(f"paired comparison needs the same users: {point.size} vs {base.size}")
    n = int(point.size)
    if n == 0:
        return {"delta": float("nan"), "delta_ci95": [float("nan")] * 2, "paired_n": 0, "measurable": False}
    diff = point - base
    means = np.concatenate([diff[i].mean(axis=1) for i in _user_resamples(n, resamples, seed)])
    low, high = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    return {"delta": float(diff.mean()), "delta_ci95": [low, high], "paired_n": n,
            "measurable": not (low <= 0.0 <= high)}
