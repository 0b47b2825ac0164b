"""Library peers for the recommender's quality: ``implicit``'s ALS and BPR, well-kept CPU implementations of the
two classic implicit-feedback factorizations, trained on the same split and measured by the same code.

A peer is fitted on the split's training interactions only (the user x item matrix of the training positives:
the validation and test items never enter it) and its factors are copied into a ``MatrixFactorization`` without
biases (ALS scores a pair by the dot product of the two factor rows; implicit's BPR appends an item-bias column to
the item factors and a column of ones to the user factors, so the dot product of its rows includes the bias).
``metrics.evaluate`` then measures it exactly as it measures the product's models: the same held-out items, the
same 99 sampled negatives per user, the same full-catalogue ranking and bootstrap over users.

``tune`` picks a peer's settings from a small grid by validation NDCG@10, as ``train.py`` picks its epoch: the
test items are never looked at until the chosen settings are measured. Fits are seeded and single-threaded
(implicit's BPR is Hogwild! with several threads: not repeatable).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from gemini_core.errors import ConfigError
from gemini_core.kinds.recommend.data import RankingSplit
from gemini_core.kinds.recommend.metrics import sampled_ndcg
from gemini_core.kinds.recommend.models import MatrixFactorization

PEERS = ("als", "bpr")
INSTALL_HINT = "pip install --no-deps -r requirements-recommend.txt (implicit>=0.7.3,<0.8: a CPU wheel)"


@dataclass(frozen=True)
class PeerSettings:
    peer: str = "als"  # one of PEERS
    factors: int = 64
    regularization: float = 0.01
    iterations: int = 15  # ALS sweeps, or BPR epochs
    alpha: float = 1.0  # ALS: confidence = 1 + alpha * interactions
    learning_rate: float = 0.01  # BPR
    seed: int = 0

    def __post_init__(self):
        if self.peer not in PEERS:
            raise ConfigError(f"peer {self.peer!r}: choose from {', '.join(PEERS)}")
        if int(self.factors) < 1 or int(self.iterations) < 1:
            raise ConfigError("factors and iterations must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)


def require_implicit():
    """implicit's ALS and BPR classes, or a ConfigError that says how to install implicit."""
    try:
        import implicit  # noqa: F401
        from implicit.als import AlternatingLeastSquares
        from implicit.bpr import BayesianPersonalizedRanking
    except ImportError as exc:
        raise ConfigError(f"the library peers need implicit ({exc}); install it with: {INSTALL_HINT}") from None
    return AlternatingLeastSquares, BayesianPersonalizedRanking


def train_matrix(split: RankingSplit):
    """The users x items CSR matrix of the training positives (1.0 each), float32."""
    from scipy.sparse import csr_matrix

    data = np.ones(split.train_users.shape[0], dtype=np.float32)
    return csr_matrix((data, (split.train_users, split.train_items)), shape=(split.n_users, split.n_items),
                      dtype=np.float32)


def fit(split: RankingSplit, settings: PeerSettings = PeerSettings()) -> tuple[MatrixFactorization, float]:
    """(the peer's factors as a ``MatrixFactorization`` without biases, seconds the fit took)."""
    from threadpoolctl import threadpool_limits

    als, bpr = require_implicit()
    matrix = train_matrix(split)
    # implicit's ALS parallelises itself and checks at construction that BLAS runs on one thread
    with threadpool_limits(1, "blas"):
        if settings.peer == "als":
            model = als(factors=settings.factors, regularization=settings.regularization, alpha=settings.alpha,
                        iterations=settings.iterations, random_state=settings.seed, num_threads=1)
        else:
            model = bpr(factors=settings.factors, learning_rate=settings.learning_rate,
                        regularization=settings.regularization, iterations=settings.iterations,
                        random_state=settings.seed, num_threads=1)
        begin = time.perf_counter()
        model.fit(matrix, show_progress=False)
    seconds = time.perf_counter() - begin
    users, items = np.asarray(model.user_factors), np.asarray(model.item_factors)
    out = MatrixFactorization(split.n_users, split.n_items, dim=int(users.shape[1]), biases=False)
    with torch.no_grad():
        out.user_embedding.weight.copy_(torch.from_numpy(users.astype(np.float32)))
        out.item_embedding.weight.copy_(torch.from_numpy(items.astype(np.float32)))
    return out.eval(), seconds


GRIDS = {
    "als": [{"factors": f, "regularization": r, "alpha": a}
            for f in (32, 64) for r in (0.01, 1.0) for a in (1.0, 10.0)],
    "bpr": [{"factors": f, "learning_rate": lr, "iterations": 100} for f in (32, 64) for lr in (0.01, 0.05)],
}


def tune(split: RankingSplit, peer: str, grid: list[dict] | None = None, seed: int = 0) -> dict:
    """Fit ``peer`` for each setting of ``grid`` (``GRIDS[peer]`` by default) and keep the best by validation
    NDCG@10: ``{"settings", "model", "val_ndcg_at_10", "seconds", "tried": [...]}``."""
    tried, best = [], None
    for change in grid or GRIDS[peer]:
        settings = replace(PeerSettings(peer=peer, seed=seed), **change)
        model, seconds = fit(split, settings)
        value = sampled_ndcg(model, split, "val")
        tried.append({**settings.to_dict(), "val_ndcg_at_10": value, "seconds": seconds})
        if best is None or value > best["val_ndcg_at_10"]:
            best = {"settings": settings, "model": model, "val_ndcg_at_10": value, "seconds": seconds}
    best["tried"] = tried
    return best
