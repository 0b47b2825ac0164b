"""Ranking quality of a recommender on the leave-last-out split: one held-out item per user.

Two protocols, both per user, then averaged over users:

- Sampled (the NCF protocol): the held-out item is ranked among itself and the user's 99 sampled unseen
  items. HR@10 = 1 when it is in the top 10; NDCG@10 = 1 / log2(rank + 2) there (rank 0-based), else 0;
  AUC = the share of the 99 that score below it (a tie counts half). Cheap, but sampled metrics can order
  models differently from full rankings (Krichene and Rendle, "On Sampled Metrics for Item
  Recommendation", KDD 2020), hence the second protocol.
- Full catalogue: the held-out item is ranked among every item except those the user is already known to
  have interacted with (the training items; for the test item also the validation item, which comes
  earlier in time). With one relevant item, Recall@20 is a hit in the top 20; NDCG@20 as above at 20.

A tie with the held-out item counts against it in the ranks (pessimistic): a model that scores every item
alike (a collapsed or over-pruned one) ranks last rather than first.

Each figure has a 95% bootstrap interval over users (``results.stats``, seeded), and the record keeps each
user's values (``user_ndcg_at_10``, ...) in the split's user order, so two records of the same evaluation
(``ranking_eval_key``) pair user by user (``with_reference_comparison``); the registered quality metric
``ndcg@10`` (``results.metrics``) reads them.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from gemini_core.errors import Cancelled
from gemini_core.kinds.recommend.data import RankingSplit
from gemini_core.kinds.recommend.models import Recommender
from gemini_core.results.metrics import get_metric
from gemini_core.results.stats import BOOTSTRAP_SEED, bootstrap_mean_interval, paired_mean_difference

QUALITY_METRIC = "ndcg@10"
SAMPLED_K = 10
FULL_K = 20
# record field -> per-user field: the figures a record holds, each with its interval and per-user values
FIGURES = {"hr_at_10": "user_hr_at_10", "ndcg_at_10": "user_ndcg_at_10", "auc": "user_auc",
           "recall_at_20": "user_recall_at_20", "ndcg_at_20": "user_ndcg_at_20"}


# -- per-user values from ranks -----------------------------------------------------------------------------
def hits(ranks, k: int) -> np.ndarray:
    """1.0 where the held-out item's 0-based rank is within the top ``k``."""
    return (np.asarray(ranks) < k).astype(np.float64)


def ndcg(ranks, k: int) -> np.ndarray:
    """1 / log2(rank + 2) within the top ``k``, else 0: the NDCG of one relevant item (its ideal DCG is 1)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


# -- ranks from a model ---------------------------------------------------------------------------------------
@torch.no_grad()
def sampled_ranks(model: Recommender, users, positives, negatives, batch_size: int = 1024,
                  should_stop: Callable[[], bool] | None = None, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """(rank of each held-out item among itself and its negatives, 0-based with ties against it; per-user AUC)."""
    model.eval()
    users = torch.as_tensor(np.asarray(users), dtype=torch.long)
    candidates = torch.cat([torch.as_tensor(np.asarray(positives), dtype=torch.long).reshape(-1, 1),
                            torch.as_tensor(np.asarray(negatives), dtype=torch.long)], dim=1)
    width = candidates.shape[1]
    ranks, aucs = [], []
    for start in range(0, users.shape[0], batch_size):
        if should_stop is not None and should_stop():
            raise Cancelled("stopped while ranking held-out items")
        u = users[start:start + batch_size].to(device)
        c = candidates[start:start + batch_size].to(device)
        scores = model(u.repeat_interleave(width), c.reshape(-1)).reshape(-1, width).float()
        positive, rest = scores[:, :1], scores[:, 1:]
        ranks.append((rest >= positive).sum(1).cpu())
        aucs.append((((rest < positive).float() + 0.5 * (rest == positive).float()).mean(1)).cpu())
    if not ranks:
        return np.zeros(0, np.int64), np.zeros(0)
    return torch.cat(ranks).numpy().astype(np.int64), torch.cat(aucs).double().numpy()


@torch.no_grad()
def full_ranks(model: Recommender, split: RankingSplit, which: str = "test", batch_size: int = 256,
               should_stop: Callable[[], bool] | None = None, device="cpu") -> np.ndarray:
    """The held-out item's 0-based rank among every item the user is not known to have interacted with."""
    model.eval()
    users, held, _ = split.held_out(which)
    item_vectors, item_bias = model.catalogue()
    out = []
    for start in range(0, users.size, batch_size):
        if should_stop is not None and should_stop():
            raise Cancelled("stopped while ranking the catalogue")
        batch = users[start:start + batch_size]
        scores = model.score_all(torch.as_tensor(batch, device=device), item_vectors, item_bias).float()
        rows, cols = _known_items(split, batch, which, start)
        scores[torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)] = float("-inf")
        target = torch.as_tensor(held[start:start + batch_size], device=device)
        positive = scores.gather(1, target.reshape(-1, 1))
        out.append(((scores >= positive).sum(1) - 1).cpu())  # every other item scored as high or higher
    return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, np.int64)


def _known_items(split: RankingSplit, batch: np.ndarray, which: str, start: int) -> tuple[np.ndarray, np.ndarray]:
    """(row in the batch, item) of every item excluded from a batch's ranking."""
    counts = split.train_offsets[batch + 1] - split.train_offsets[batch]
    rows = np.repeat(np.arange(batch.size), counts)
    cols = np.concatenate([split.train_items_of(int(u)) for u in batch]) if batch.size else np.zeros(0, np.int64)
    if which == "test":  # the validation item came before the test item: the user is known to have it
        rows = np.concatenate([rows, np.arange(batch.size)])
        cols = np.concatenate([cols, split.val_items[start:start + batch.size]])
    return rows, cols.astype(np.int64)


# -- the evaluation record -------------------------------------------------------------------------------------
def sampled_ndcg(model: Recommender, split: RankingSplit, which: str = "val", k: int = SAMPLED_K) -> float:
    """Mean sampled NDCG@k (what training's early stopping watches)."""
    users, held, negatives = split.held_out(which)
    ranks, _ = sampled_ranks(model, users, held, negatives)
    return float(ndcg(ranks, k).mean()) if ranks.size else float("nan")


def evaluate(model: Recommender, split: RankingSplit, which: str = "test", full: bool = True,
             seed: int = BOOTSTRAP_SEED, should_stop: Callable[[], bool] | None = None, device="cpu") -> dict:
    """The record fields of one evaluation: each figure (``hr_at_10``, ``ndcg_at_10``, ``auc``, and with
    ``full`` ``recall_at_20``, ``ndcg_at_20``), its ``_ci95`` and its per-user values, the number of users,
    the negatives per user and the evaluation's key."""
    users, held, negatives = split.held_out(which)
    ranks, auc = sampled_ranks(model, users, held, negatives, should_stop=should_stop, device=device)
    per_user = {"hr_at_10": hits(ranks, SAMPLED_K), "ndcg_at_10": ndcg(ranks, SAMPLED_K), "auc": auc}
    if full:
        ranked = full_ranks(model, split, which, should_stop=should_stop, device=device)
        per_user.update({"recall_at_20": hits(ranked, FULL_K), "ndcg_at_20": ndcg(ranked, FULL_K)})
    record = {"ranking_split": which, "users_n": int(users.size), "negatives_per_user": int(negatives.shape[1]),
              "ranking_eval_key": split.fingerprint(which), "ranking_protocol": "leave-last-out"}
    for name, values in per_user.items():
        record.update(figure_fields(name, values, seed))
    return record


def figure_fields(name: str, values, seed: int = BOOTSTRAP_SEED) -> dict:
    """``name`` (the mean), ``name_ci95`` (bootstrap over users) and its per-user list."""
    values = np.asarray(values, dtype=np.float64)
    low, high = bootstrap_mean_interval(values, seed=seed)
    mean = float(values.mean()) if values.size else float("nan")
    # hits are stored as ints; the others as floats rounded to 9 digits (far below any interval's width)
    stored = values.astype(int).tolist() if name.startswith(("hr_", "recall_")) else np.round(values, 9).tolist()
    return {name: mean, f"{name}_ci95": [low, high], FIGURES[name]: stored}


def paired_figure(point: dict, reference: dict, name: str = "ndcg_at_10", seed: int = BOOTSTRAP_SEED) -> dict | None:
    """Point minus reference in ``name`` on the same users (paired bootstrap over users); None when the two
    records were not evaluated on the same users, held-out items and negatives."""
    values, ref_values = point.get(FIGURES[name]), reference.get(FIGURES[name])
    if not isinstance(values, list) or not isinstance(ref_values, list) or len(values) != len(ref_values) \
            or point.get("ranking_eval_key") != reference.get("ranking_eval_key"):
        return None
    return paired_mean_difference(values, ref_values, seed=seed)


def with_reference_comparison(record: dict, reference: dict) -> dict:
    """``record`` with its paired differences to ``reference``: ``<figure>_delta`` and ``_delta_ci95`` for every
    figure both hold, and the quality metric's own (``ndcg@10_delta``, ``_ci95``, ``_measurable``: the fields
    the points table reads)."""
    out = dict(record)
    for name in FIGURES:
        found = paired_figure(record, reference, name)
        if found is not None:
            out[f"{name}_delta"], out[f"{name}_delta_ci95"] = found["delta"], found["delta_ci95"]
    paired = get_metric(QUALITY_METRIC).paired(record, reference)
    if paired is not None:
        out.update({f"{QUALITY_METRIC}_delta": paired.estimate, f"{QUALITY_METRIC}_delta_ci95": list(paired.ci95),
                    f"{QUALITY_METRIC}_delta_measurable": paired.measurable, "paired_n": paired.n})
    return out


def summary_line(record: dict) -> str:
    """'HR@10 61.3% [57.4, 65.1], NDCG@10 38.2% [35.0, 41.3] over 610 users' for logs and the CLI."""
    def one(label, name):
        value, ci = record.get(name), record.get(f"{name}_ci95") or [math.nan, math.nan]
        return f"{label} {100 * value:.1f}% [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"

    parts = [one("HR@10", "hr_at_10"), one("NDCG@10", "ndcg_at_10")]
    if "recall_at_20" in record:
        parts += [one("Recall@20", "recall_at_20"), one("NDCG@20", "ndcg_at_20")]
    return ", ".join(parts) + f" over {record.get('users_n', 0):,} users"
