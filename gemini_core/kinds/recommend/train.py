"""Training a recommender on implicit feedback: BPR with sampled negatives, early stopping on validation NDCG@10.

The loss is BPR (Rendle et al., 2009) with ``negatives`` sampled items per positive: -log sigmoid(s(u, i) -
s(u, j)), averaged. It asks exactly what the ranking metrics measure, that a user's positive scores above
an item the user did not pick, and needs no calibrated probabilities; ``loss="bce"`` (positives 1,
sampled negatives 0, the NCF objective) is there to compare. Negatives are drawn uniformly from the
catalogue and drawn again where they hit one of the user's training positives (a few rounds; what is left
after them is rare and harmless). An L2 penalty on the rows a batch uses (``l2``) keeps rarely seen ids
near zero, where a weight decay over every row at every step would shrink the rows a batch never touched.

Reproducible as the classifier's training is (``training.loop.reproducible``): deterministic algorithms, a
seeded private random state for the initialisation, a fixed thread count, and one seeded
``torch.Generator`` for the data order and the negatives. The same split, settings and seed give the same
weights bit for bit on CPU.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from gemini_core.errors import Cancelled, ConfigError
from gemini_core.kinds.recommend.als import fit_als
from gemini_core.kinds.recommend.data import RankingSplit
from gemini_core.kinds.recommend.epochs import EpochLog
from gemini_core.kinds.recommend.models import MODELS, MatrixFactorization, Recommender, TextTwoTower, TwoTower
from gemini_core.progress import ProgressFn, notify
from gemini_core.settings import Number, OneOf, Whole, settings
from gemini_core.training.loop import reproducible

STEP_LOSSES = ("bpr", "bce", "softmax")  # trained by gradient steps on sampled negatives
LOSSES = ("auto", *STEP_LOSSES, "als")
# the penalty of each loss when l2 is not given: ALS's is on every row at every half-step, frequency-scaled
# (picked with the other ALS defaults by validation NDCG@10 on MovieLens-small, docs/recommend.md); the
# sampled losses' is on the rows a batch uses
DEFAULT_L2 = {"als": 0.3, "bpr": 1e-4, "bce": 1e-4, "softmax": 1e-4}
RESAMPLE_ROUNDS = 4  # negatives that hit a positive are drawn again this many times


@settings
class RecommendTrainSettings:
    """How a recommender is trained; all of it (with the split) decides the weights."""

    model: Annotated[str, OneOf(MODELS, says="recommender model {value!r}: choose one of {choices}")] = "mf"
    dim: Annotated[Whole, Field(ge=1)] = 64  # embedding width
    hidden: Annotated[Whole, Field(ge=1)] = 64  # the towers' hidden width (two-tower models)
    # auto: ALS for matrix factorization, BPR for the two-tower models (ALS needs the scores linear in each table)
    loss: Annotated[str, OneOf(LOSSES, says="loss {value!r}: choose one of {choices}")] = "auto"
    negatives: Annotated[Whole, Field(ge=1)] = 4  # sampled per positive
    epochs: Annotated[Whole, Field(ge=1)] = 40
    batch_size: Annotated[Whole, Field(ge=1)] = 1024
    lr: Annotated[Number, Field(gt=0, allow_inf_nan=False)] = 0.01  # Adam
    l2: Annotated[Number | None, Field(ge=0, allow_inf_nan=False)] = None  # None: the loss's DEFAULT_L2
    alpha: Annotated[Number, Field(ge=0, allow_inf_nan=False)] = 5.0  # als: a positive's confidence is 1 + alpha
    l2_frequency: Annotated[Number, Field(ge=0, allow_inf_nan=False)] = 1.0  # als: penalty x (1 + positives) ** this
    patience: Annotated[Whole, Field(ge=0)] = 3  # epochs without a better validation NDCG@10 (0: run every epoch)
    seed: Whole = 0
    threads: Annotated[Whole, Field(ge=1)] = 1
    max_steps: Annotated[Whole | None, Field(ge=1)] = None  # stop after this many optimizer steps (tests, demos)

    def __post_init__(self) -> None:
        if self.loss == "als" and self.model != "mf":
            raise ConfigError(f"the als loss solves a matrix factorization's rows exactly; a {self.model} model has "
                              "towers between its tables and its scores: choose bpr, softmax or bce")

    @property
    def objective(self) -> str:
        """The loss trained ("auto" resolved)."""
        if self.loss != "auto":
            return self.loss
        return "als" if self.model == "mf" else "bpr"

    @property
    def penalty(self) -> float:
        return float(DEFAULT_L2[self.objective] if self.l2 is None else self.l2)

    def for_steps(self) -> "RecommendTrainSettings":
        """These settings for gradient steps (recovery after compression): an ALS model is fine-tuned with BPR
        at BPR's penalty, since a compressed table's rows are no longer free to be solved for."""
        if self.objective != "als":
            return self
        return replace(self, loss="bpr", l2=None)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    model: Recommender
    history: list[dict]  # one record per epoch, then the "chosen" record
    best_epoch: int
    val_ndcg_at_10: float
    seconds: float
    stopped: str  # why training ended: "patience", "epochs" or "max_steps"


def new_model(split: RankingSplit, settings: RecommendTrainSettings,
              text_features: torch.Tensor | None = None) -> Recommender:
    """A fresh model of ``settings.model`` for the split's users and items (seeded by the caller)."""
    n_users, n_items = split.n_users, split.n_items
    if settings.model == "mf":
        # ALS solves the two tables and nothing else: an item bias would stay 0 and cost 4 bytes per item
        return MatrixFactorization(n_users, n_items, settings.dim, biases=settings.objective != "als")
    if settings.model == "two-tower":
        return TwoTower(n_users, n_items, settings.dim, settings.hidden)
    if text_features is None:
        raise ConfigError("the text-two-tower model needs item texts (an item file with text columns)")
    return TextTwoTower(n_users, n_items, text_features, settings.dim, settings.hidden)


def train_recommender(split: RankingSplit, settings: RecommendTrainSettings = RecommendTrainSettings(), *,
                      text_features: torch.Tensor | None = None, progress: ProgressFn | None = None,
                      should_stop: Callable[[], bool] | None = None, device="cpu") -> TrainResult:
    """A new model trained on ``split`` (initialised under the same seed, so the whole run repeats)."""
    with reproducible(settings.seed, settings.threads, device):
        model = new_model(split, settings, text_features)
        return _fit(model, split, settings, progress, should_stop, device)


def fit(model: Recommender, split: RankingSplit, settings: RecommendTrainSettings, *,
        progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
        device="cpu") -> TrainResult:
    """Train an existing model (recovery after compression, say) the same way."""
    with reproducible(settings.seed, settings.threads, device):
        return _fit(model, split, settings, progress, should_stop, device)


def sample_negatives(users: torch.Tensor, count: int, n_items: int, positive_keys: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """(len(users), count) items drawn uniformly, drawn again where they are one of the user's positives
    (``positive_keys``: sorted user * n_items + item of the training positives)."""
    negatives = torch.randint(0, n_items, (users.shape[0], count), generator=generator)
    for _ in range(RESAMPLE_ROUNDS):
        hit = torch.isin(users.unsqueeze(1) * n_items + negatives, positive_keys)
        if not bool(hit.any()):
            break
        negatives[hit] = torch.randint(0, n_items, (int(hit.sum()),), generator=generator)
    return negatives


def sampled_loss(objective: str, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """The loss of each positive's score against its k sampled negatives' (``negative``: batch x k), for the
    gradient objectives (one definition for one-process and sharded training)."""
    if objective == "bpr":
        return -nn.functional.logsigmoid(positive.unsqueeze(1) - negative).mean()
    if objective == "softmax":
        # the positive is class 0 among itself and its k negatives: a sampled softmax, whose gradient is led by
        # the negatives that currently score highest (BPR's average lets easy ones dominate)
        logits = torch.cat([positive.unsqueeze(1), negative], dim=1)
        return nn.functional.cross_entropy(logits, torch.zeros(positive.shape[0], dtype=torch.long,
                                                               device=positive.device))
    k = negative.shape[1]
    return (nn.functional.binary_cross_entropy_with_logits(positive, torch.ones_like(positive))
            + k * nn.functional.binary_cross_entropy_with_logits(negative, torch.zeros_like(negative))) / (1 + k)


def row_penalty(model: Recommender, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """The squared norms of the id rows (and item biases) a batch uses, per positive: ``items`` holds the
    positives and the negatives (read through the model's lookups, so a TorchRec twin's too)."""
    total = model.user_embedding(users).pow(2).sum() + model.item_embedding(items).pow(2).sum()
    bias = getattr(model, "item_bias", None)
    if bias is not None:
        total = total + bias(items).pow(2).sum()
    return total / max(users.shape[0], 1)


def _fit(model: Recommender, split: RankingSplit, settings: RecommendTrainSettings, progress, should_stop,
         device) -> TrainResult:
    start_time = time.perf_counter()
    device = torch.device(device)
    model.to(device).train()
    if settings.objective == "als":
        history, best_value, best_epoch, best_state, stopped = fit_als(model, split, settings, progress,
                                                                        should_stop, start_time)
    else:
        history, best_value, best_epoch, best_state, stopped = _fit_steps(model, split, settings, progress,
                                                                          should_stop, device, start_time)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    seconds = time.perf_counter() - start_time
    history.append({"event": "chosen", "epoch": best_epoch, "val_ndcg_at_10": best_value, "stopped": stopped,
                    "seconds": seconds})
    notify(progress, "chosen", f"kept epoch {best_epoch} (validation NDCG@10 {100 * best_value:.2f}%), "
           f"stopped: {stopped}", epoch=best_epoch, val_ndcg_at_10=best_value, stopped=stopped)
    return TrainResult(model, history, best_epoch, best_value, seconds, stopped)


def _fit_steps(model: Recommender, split: RankingSplit, settings: RecommendTrainSettings, progress, should_stop,
               device, start_time: float):
    """Gradient steps (Adam) on the sampled loss, validation NDCG@10 after each epoch."""
    users = torch.as_tensor(split.train_users, dtype=torch.long)
    items = torch.as_tensor(split.train_items, dtype=torch.long)
    n, n_items, k = int(users.shape[0]), split.n_items, settings.negatives
    keys = torch.sort(users * n_items + items).values
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    log, steps = EpochLog(split, settings, progress, start_time), 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        total, batches = 0.0, 0
        for begin in range(0, n, settings.batch_size):
            if should_stop is not None and should_stop():
                raise Cancelled(f"stopped in epoch {epoch} after {steps} training steps")
            index = order[begin:begin + settings.batch_size]
            u, i = users[index], items[index]
            j = sample_negatives(u, k, n_items, keys, generator)
            u, i, j = u.to(device), i.to(device), j.to(device)
            positive = model(u, i)
            negative = model(u.repeat_interleave(k), j.reshape(-1)).reshape(-1, k)
            loss = sampled_loss(settings.objective, positive, negative)
            if settings.penalty:
                loss = loss + settings.penalty * row_penalty(model, u, torch.cat([i, j.reshape(-1)]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches, steps = total + float(loss.detach()), batches + 1, steps + 1
            if settings.max_steps is not None and steps >= settings.max_steps:
                break
        if log.close(model, epoch, steps, total / max(batches, 1)):
            break
    return log.result()
