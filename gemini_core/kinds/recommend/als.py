"""Matrix factorization trained by implicit alternating least squares (iALS: Hu, Koren and Volinsky, "Collaborative
Filtering for Implicit Feedback Datasets", 2008): the ``loss="als"`` of ``train.py``.

Every (user, item) pair is a target: 1 for a training positive, 0 otherwise, weighted by a confidence of
``1 + alpha`` for a positive and 1 for the rest, plus ``l2`` times the squared norms of all rows. With the item
rows fixed each user row is the solution of a small linear system, and the other way round, so one epoch
is two exact half-steps instead of many noisy gradient steps. Only the positives are visited: the
all-pairs part is one Gram matrix per half-step (Y^T Y), the positives add ``alpha * y y^T`` each.

What matches the rest of the product's training: the model is a ``MatrixFactorization`` (its item biases stay
0: a bias would need its own column of ones), initialised under the run's seed as every model is; after each
epoch validation NDCG@10 decides the kept epoch and early stopping; the same settings and seed give the
same weights bit for bit on CPU (no sampling, a fixed order of sums). The test items are never read.
"""
from __future__ import annotations

import torch

from gemini_core.errors import Cancelled, ConfigError
from gemini_core.kinds.recommend.data import RankingSplit
from gemini_core.kinds.recommend.epochs import EpochLog
from gemini_core.kinds.recommend.models import MatrixFactorization, Recommender

OUTER_FLOATS = 1 << 22  # floats of outer products summed at once (16 MiB): bounds the memory, not the result


def solve_side(fixed: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, extra: torch.Tensor,
               l2: torch.Tensor) -> torch.Tensor:
    """The rows (n_rows x d) that minimise the weighted squared error against ``fixed`` (the other side's rows):
    for row r, (G + sum w y y^T + l2 I) x_r = sum (1 + w) y over the positives (r, c) of r, where w is the
    positive's confidence above 1 (``extra``). ``rows``/``cols``/``extra``: the positives, sorted by ``rows``."""
    dim = fixed.shape[1]
    gram = fixed.T @ fixed
    eye = torch.eye(dim, dtype=fixed.dtype)
    out = torch.empty(n_rows, dim, dtype=fixed.dtype)
    per_chunk = max(1, OUTER_FLOATS // (dim * dim))
    bounds = torch.searchsorted(rows, torch.arange(0, n_rows + per_chunk, per_chunk).clamp(max=n_rows))
    for chunk, begin in enumerate(range(0, n_rows, per_chunk)):
        end = min(begin + per_chunk, n_rows)
        systems = gram + l2[begin:end, None, None] * eye
        targets = torch.zeros(end - begin, dim, dtype=fixed.dtype)
        lo, hi = int(bounds[chunk]), int(bounds[chunk + 1])
        for start in range(lo, hi, per_chunk):
            stop = min(start + per_chunk, hi)
            local, vectors, w = rows[start:stop] - begin, fixed[cols[start:stop]], extra[start:stop, None]
            outer = vectors.unsqueeze(2) * vectors.unsqueeze(1)
            systems.index_add_(0, local, w.unsqueeze(2) * outer)
            targets.index_add_(0, local, (1.0 + w) * vectors)
        out[begin:end] = torch.linalg.solve(systems, targets)
    return out


def objective(users: torch.Tensor, items: torch.Tensor, u: torch.Tensor, i: torch.Tensor, extra: torch.Tensor,
              user_l2: torch.Tensor, item_l2: torch.Tensor) -> float:
    """The iALS loss per positive: every pair's squared score (trace form) corrected on the positives, plus the
    penalty. Reported per epoch as the gradient-trained losses are."""
    scores = (users[u] * items[i]).sum(-1)
    every_pair = torch.trace((users.T @ users) @ (items.T @ items))
    positives = ((1.0 + extra) * (1.0 - scores) ** 2 - scores ** 2).sum()
    penalty = (user_l2 * users.pow(2).sum(1)).sum() + (item_l2 * items.pow(2).sum(1)).sum()
    return float((every_pair + positives + penalty) / max(u.shape[0], 1))


def free_rows(model: Recommender, name: str) -> torch.Tensor | None:
    """The float weight holding one row per id of table ``name`` (a trained ``nn.Embedding``, or a compressed
    table still in float ``rows`` layout, such as after dimension pruning); None when the rows are shared,
    factored or quantized, where ALS has no per-id row to solve for."""
    table = getattr(model, name, None)
    if isinstance(table, torch.nn.Embedding):
        return table.weight
    parts = getattr(table, "parts", None)
    if getattr(table, "layout", None) == "rows" and parts is not None and parts["rows"].bits == 32:
        return parts["rows"].weight
    return None


def fit_als(model: Recommender, split: RankingSplit, settings, progress, should_stop, start_time: float):
    """Alternate the two exact half-steps for up to ``settings.epochs`` epochs (``train._fit``'s contract:
    returns the history, the kept epoch, its validation NDCG@10 and why training stopped)."""
    user_rows, item_rows = free_rows(model, "user_embedding"), free_rows(model, "item_embedding")
    if not isinstance(model, MatrixFactorization) or user_rows is None or item_rows is None:
        raise ConfigError(f"the als loss solves the float rows of a matrix factorization's tables exactly, not a "
                          f"{model.model_name} model's or tables in another layout (use bpr, softmax or bce)")
    users_by_user = torch.as_tensor(split.train_users, dtype=torch.long)
    items_by_user = torch.as_tensor(split.train_items, dtype=torch.long)
    extra_by_user = torch.full((users_by_user.shape[0],), float(settings.alpha))
    order = torch.argsort(items_by_user * split.n_users + users_by_user)
    items_by_item, users_by_item, extra_by_item = items_by_user[order], users_by_user[order], extra_by_user[order]
    counts = {"users": torch.bincount(users_by_user, minlength=split.n_users).float(),
              "items": torch.bincount(items_by_user, minlength=split.n_items).float()}
    # frequency-scaled penalty (Rendle et al., "Revisiting the Performance of iALS", 2022): a row fitted to more
    # positives gets a proportionally larger penalty, so heavy users and popular items do not overfit
    l2 = {side: settings.penalty * (1.0 + c) ** float(settings.l2_frequency) for side, c in counts.items()}
    log = EpochLog(split, settings, progress, start_time)
    with torch.no_grad():
        model.eval()
        for epoch in range(1, settings.epochs + 1):
            if should_stop is not None and should_stop():
                raise Cancelled(f"stopped in epoch {epoch} of alternating least squares")
            user_rows.copy_(solve_side(item_rows, users_by_user, items_by_user, split.n_users, extra_by_user,
                                       l2["users"]))
            item_rows.copy_(solve_side(user_rows, items_by_item, users_by_item, split.n_items, extra_by_item,
                                       l2["items"]))
            loss = objective(user_rows, item_rows, users_by_user, items_by_user, extra_by_user, l2["users"],
                             l2["items"])
            if log.close(model, epoch, 2 * epoch, loss):  # two half-steps (users, then items) an epoch
                break
    return log.result()
