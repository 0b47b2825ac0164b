"""Compressing a trained recommender where it spends its bytes: the id-indexed embedding tables (one row per
user or item), and, for two-tower models, the dense towers.

What a point can do (``RecommendPointConfig``), in the order it is done:

1. **Tower pruning** (two-tower models): the towers' hidden layers lose ``tower_prune_ratio`` of their units,
   chosen by torch-pruning's dependency graph with the product's L2 group importance (``l2-structured``);
   the towers' last layers keep their width (the dot product pairs them) and the tables are left alone.
2. **Dimension pruning**: the ``dim_prune_ratio`` least-energy embedding dimensions are dropped. A dimension's
   energy is the norm of what it can add to a score: for matrix factorization the user and the item columns
   of that dimension (dropped in both tables together: the dot product pairs them), for two towers the
   table's column times the norm of the tower's first-layer column that reads it (dropped with that column).
3. **One table layout** (at most one of these):
   - *rare rows pruned*: the ``row_prune_ratio`` of users (and of items) with the fewest training
     interactions share one fallback row per table (the mean of the rows they had); which ids kept their own
     row is one bit per id;
   - *low rank*: each table factored as A (ids x ``rank``) times B (``rank`` x dim), by truncated SVD;
   - *quotient-remainder* (Shi et al., "Compositional Embeddings Using Complementary Partitions", 2020):
     id i is ``Q[i // m] * R[i % m]`` (elementwise) with ``m = qr_divisor``, so ceil(n / m) + m rows stand
     for n ids and every id still has its own product. Q and R are fitted to the trained table by a few
     rounds of alternating least squares, then recovered.
4. **Recovery**: ``recovery_steps`` steps of the baseline's training (``train.fit``; an ALS baseline whose tables
   still hold a float row per id takes ALS half-steps, any other BPR steps at the baseline's learning rate;
   the epoch with the best validation NDCG@10 kept) on whatever changed. A sweep gives every point
   that changed structure the same budget, and measures the uncompressed model fine-tuned on that budget too
   (the control), so a point is never credited with training the baseline did not get.
5. **Row-wise quantization** of every table's rows to ``embedding_bits`` (8, 4 or 2): each row its own scale
   and offset (asymmetric, min to max), stored as float16 as FBGEMM's row-wise tables do; the codes are
   packed (two 4-bit or four 2-bit codes per byte, each row padded to whole bytes), so the bytes written
   drop with the bits. With ``hot_share`` the rows with the most training interactions (that share of each
   table's rows) keep 8 bits and the rest get ``embedding_bits``. Lookups dequantize only the rows asked for.

Width-1 tables (matrix factorization's item biases) stay float32: a per-row scale and offset would take more
bytes than the value they describe. Dense layers stay float32.

A compressed model is still a ``Recommender`` (``score_candidates``, ``score_all``, training's forward): its
``user_embedding`` / ``item_embedding`` are ``Table`` modules. ``stored.stored_tensors`` is exactly what an export
writes (packed codes, float16 scales and offsets, packed bit masks, float32 dense weights); ``rebuild`` makes
the model again from those tensors and ``layout`` alone.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import asdict, fields, replace
from typing import Annotated

import numpy as np
import torch
import torch_pruning as tp
from pydantic import Field
from torch import nn

from gemini_core.errors import ConfigError
from gemini_core.kinds.recommend.als import free_rows
from gemini_core.kinds.recommend.data import RankingSplit
from gemini_core.kinds.recommend.models import Recommender, TextTwoTower, TwoTower
from gemini_core.kinds.recommend.stored import TABLES, TOWER_OF
from gemini_core.kinds.recommend.tables import (
    BITS,
    HOT_BITS,
    FloatRows,
    QuantRows,
    Table,
)
from gemini_core.kinds.recommend.train import RecommendTrainSettings, fit
from gemini_core.settings import Number, OneOf, Whole, settings
from gemini_core.techniques.methods import PRUNE_METHODS
from gemini_core.training.loop import reproducible

TOWER_METHOD = "l2-structured"  # the product's registered structured method (techniques/methods.py)
MAX_ROW_PRUNE = 0.95
MAX_DIM_PRUNE = 0.9
MAX_TOWER_PRUNE = 0.9
MAX_RECOVERY_STEPS = 100_000
QR_FIT_ROUNDS = 10


# -- the point ------------------------------------------------------------------------------------------------
@settings
class RecommendPointConfig:
    """One compression point of a recommender; every field at its default is the uncompressed reference. Types
    and bounds are the fields' annotations; the rules between fields are in ``__post_init__``."""

    embedding_bits: Annotated[Whole, OneOf(BITS, says="embedding bits {value}: choose from "
                                           + ", ".join(map(str, BITS)))] = 32  # 32 (float) or 8, 4, 2: row-wise
    # > 0: this share of each table's rows (most interactions) at 8 bits, the rest fewer
    hot_share: Annotated[Number, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.0
    # share of the rarest users / items sharing one fallback row per table
    row_prune_ratio: Annotated[Number, Field(ge=0, le=MAX_ROW_PRUNE, allow_inf_nan=False)] = 0.0
    # share of embedding dimensions dropped (least energy first)
    dim_prune_ratio: Annotated[Number, Field(ge=0, le=MAX_DIM_PRUNE, allow_inf_nan=False)] = 0.0
    rank: Annotated[Whole, Field(ge=0)] = 0  # > 0: each table factored as A (ids x rank) . B (rank x dim)
    # >= 2: quotient-remainder tables of ceil(n / m) and m rows (0: off)
    qr_divisor: Annotated[Whole, Field(ge=0, title="quotient-remainder divisor")] = 0
    # share of the towers' hidden units removed (two-tower models)
    tower_prune_ratio: Annotated[Number, Field(ge=0, le=MAX_TOWER_PRUNE, allow_inf_nan=False)] = 0.0
    # fine-tuning steps after the structural changes (before quantization)
    recovery_steps: Annotated[Whole, Field(ge=0, le=MAX_RECOVERY_STEPS)] = 0

    def __post_init__(self) -> None:
        if self.hot_share and self.embedding_bits >= HOT_BITS:
            raise ConfigError(f"mixed precision keeps the hot rows at {HOT_BITS} bits and the rest at fewer: "
                              f"choose 4 or 2 embedding bits with a hot share, not {self.embedding_bits}")
        if self.qr_divisor == 1:
            raise ConfigError(f"quotient-remainder divisor {self.qr_divisor} must be at least 2 (0: off)")
        layouts = [n for n, on in (("rare-row pruning", self.row_prune_ratio > 0), ("low rank", self.rank > 0),
                                   ("quotient-remainder", self.qr_divisor > 0)) if on]
        if len(layouts) > 1:
            raise ConfigError(f"{' and '.join(layouts)} are two layouts of one table: a point takes one of them")

    # -- what the point is
    @property
    def layout(self) -> str:
        if self.row_prune_ratio > 0:
            return "pruned"
        if self.rank:
            return "low-rank"
        if self.qr_divisor:
            return "qr"
        return "rows"

    @property
    def structural(self) -> bool:
        """Whether the point changes the model's structure (and so is recovered when the sweep recovers)."""
        return bool(self.row_prune_ratio or self.dim_prune_ratio or self.rank or self.qr_divisor
                    or self.tower_prune_ratio)

    @property
    def is_reference(self) -> bool:
        return self == RecommendPointConfig()

    @property
    def is_control(self) -> bool:
        """The uncompressed model fine-tuned on the recovery budget: what recovery alone buys."""
        return self.recovery_steps > 0 and replace(self, recovery_steps=0).is_reference

    def structure(self) -> "RecommendPointConfig":
        """The part measured once per sweep unit (everything before quantization)."""
        return replace(self, embedding_bits=32, hot_share=0.0)

    # -- storing it
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RecommendPointConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a recommender point config is an object, not {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown recommender point setting(s): {', '.join(unknown)}")
        return cls(**data)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def label(self) -> str:
        if self.is_reference:
            return "float32 (reference)"
        parts = []
        if self.tower_prune_ratio:
            parts.append(f"towers pruned {self.tower_prune_ratio:.0%}")
        if self.dim_prune_ratio:
            parts.append(f"dims pruned {self.dim_prune_ratio:.0%}")
        if self.row_prune_ratio:
            parts.append(f"rare rows pruned {self.row_prune_ratio:.0%}")
        if self.rank:
            parts.append(f"rank {self.rank}")
        if self.qr_divisor:
            parts.append(f"QR m={self.qr_divisor}")
        if self.recovery_steps:
            parts.append(f"ft{self.recovery_steps}")
        if self.embedding_bits == 32:
            parts.append("float32")
        elif self.hot_share:
            parts.append(f"int{self.embedding_bits} rows, hot {self.hot_share:.0%} int{HOT_BITS}")
        else:
            parts.append(f"int{self.embedding_bits} rows")
        return " · ".join(parts) + (" (control)" if self.is_control else "")


# -- training-interaction counts (what "rare" and "hot" mean) ------------------------------------------------
def row_counts(split: RankingSplit) -> dict[str, np.ndarray]:
    """Training interactions per user and per item: the frequency rare-row pruning and hot rows read."""
    return {"user_embedding": np.diff(split.train_offsets).astype(np.int64),
            "item_embedding": np.bincount(split.train_items, minlength=split.n_items).astype(np.int64)}


def _rarest(counts: np.ndarray, share: float) -> np.ndarray:
    """The ``share`` of ids with the fewest interactions (ties: the lower id first), as a bool mask."""
    n_pruned = int(math.floor(share * counts.size))
    order = np.argsort(counts, kind="stable")
    mask = np.zeros(counts.size, dtype=bool)
    mask[order[:n_pruned]] = True
    return mask


def _hottest(counts: np.ndarray, share: float) -> torch.Tensor:
    """The ``share`` of rows with the most interactions (at least one), as a bool mask."""
    n_hot = max(1, int(math.ceil(share * counts.size)))
    order = np.argsort(-counts, kind="stable")
    mask = np.zeros(counts.size, dtype=bool)
    mask[order[:n_hot]] = True
    return torch.from_numpy(mask)


# -- structural steps ------------------------------------------------------------------------------------
def prune_towers(model: Recommender, ratio: float) -> dict:
    """Remove ``ratio`` of the towers' hidden units with torch-pruning (L2 group importance); the tables, the
    text projection and the towers' last layers are never pruned."""
    if not isinstance(model, TwoTower):
        raise ConfigError(f"tower pruning needs a two-tower model; {model.model_name} has no towers")
    ignored = [m for m in model.modules() if isinstance(m, (nn.Embedding, Table))]
    ignored += list(model.tower_output_layers())
    if isinstance(model, TextTwoTower):
        ignored.append(model.text_projection)
    before = sum(p.numel() for p in model.parameters())
    example = (torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    pruner = tp.pruner.MetaPruner(model, example, importance=PRUNE_METHODS[TOWER_METHOD].importance(),
                                  pruning_ratio=ratio, ignored_layers=ignored)
    pruner.step()
    after = sum(p.numel() for p in model.parameters())
    return {"tower_method": TOWER_METHOD, "hidden": [model.user_tower[0].out_features,
                                                     model.item_tower[0].out_features],
            "params_before": int(before), "params_after": int(after)}


def prune_dims(model: Recommender, ratio: float) -> dict:
    """Drop the ``ratio`` least-energy embedding dimensions (see the module's docstring)."""
    if isinstance(model, TextTwoTower):
        raise ConfigError("dimension pruning of a text model: its item table's dimensions are added to the text "
                          "projection's, so they cannot be dropped alone")
    dim = model.user_embedding.weight.shape[1]
    keep_n = dim - int(math.floor(ratio * dim))
    if keep_n < 1:
        raise ConfigError(f"pruning {ratio:.0%} of {dim} dimensions leaves none")
    kept = {}
    with torch.no_grad():
        if isinstance(model, TwoTower):
            for name in TABLES:
                table, first = getattr(model, name), getattr(model, TOWER_OF[name])[0]
                energy = table.weight.norm(dim=0) * first.weight.norm(dim=0)
                keep = torch.sort(torch.topk(energy, keep_n).indices).values
                new_table = nn.Embedding(table.num_embeddings, keep_n)
                new_table.weight.copy_(table.weight[:, keep])
                new_first = nn.Linear(keep_n, first.out_features)
                new_first.weight.copy_(first.weight[:, keep])
                new_first.bias.copy_(first.bias)
                setattr(model, name, new_table)
                getattr(model, TOWER_OF[name])[0] = new_first
                kept[name] = keep.tolist()
        else:  # matrix factorization: the dot product pairs dimension d of both tables
            users, items = model.user_embedding.weight, model.item_embedding.weight
            energy = users.norm(dim=0) * items.norm(dim=0)
            keep = torch.sort(torch.topk(energy, keep_n).indices).values
            for name in TABLES:
                table = getattr(model, name)
                new_table = nn.Embedding(table.num_embeddings, keep_n)
                new_table.weight.copy_(table.weight[:, keep])
                setattr(model, name, new_table)
                kept[name] = keep.tolist()
            model.dim = keep_n
    return {"dims_kept": keep_n, "dims_before": int(dim)}


def fit_qr(weight: torch.Tensor, divisor: int, rounds: int = QR_FIT_ROUNDS) -> tuple[torch.Tensor, torch.Tensor]:
    """Q (ceil(n / m) x d) and R (m x d) with Q[i // m] * R[i % m] close to ``weight[i]`` (least squares,
    alternating: each is a closed form per row and dimension with the other fixed)."""
    weight = weight.detach().float()
    n, dim = weight.shape
    quotient = torch.div(torch.arange(n), divisor, rounding_mode="floor")
    remainder = torch.arange(n) % divisor
    q = torch.zeros(math.ceil(n / divisor), dim).index_add_(0, quotient, weight)
    q /= torch.bincount(quotient, minlength=q.shape[0]).clamp(min=1).float()[:, None]
    r = torch.ones(divisor, dim)
    eps = 1e-12
    for _ in range(rounds):
        rr = r[remainder]
        q = torch.zeros_like(q).index_add_(0, quotient, weight * rr) / \
            torch.zeros_like(q).index_add_(0, quotient, rr * rr).clamp(min=eps)
        qq = q[quotient]
        r = torch.zeros_like(r).index_add_(0, remainder, weight * qq) / \
            torch.zeros_like(r).index_add_(0, remainder, qq * qq).clamp(min=eps)
    return q, r


def to_table(weight: torch.Tensor, config: RecommendPointConfig, counts: np.ndarray) -> tuple[Table, dict]:
    """A float table in ``config``'s layout (``weight``: the trained rows), and what was done."""
    weight = weight.detach().float().cpu()
    n, dim = weight.shape
    if config.layout == "pruned":
        pruned = _rarest(counts, config.row_prune_ratio)
        kept = torch.from_numpy(~pruned)
        fallback = weight[torch.from_numpy(pruned)].mean(dim=0, keepdim=True) if pruned.any() \
            else torch.zeros(1, dim)
        rows = torch.cat([weight[kept], fallback])
        notes = {"pruned_ids": int(pruned.sum()),
                 "max_pruned_count": int(counts[pruned].max()) if pruned.any() else None}
        return Table(n, "pruned", {"rows": FloatRows(rows)}, kept=kept), notes
    if config.layout == "low-rank":
        if config.rank >= dim:
            raise ConfigError(f"rank {config.rank} is not below the embedding width {dim}: nothing to factor")
        rank = config.rank
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        a, b = u[:, :rank] * s[:rank], vh[:rank]
        energy = float((s[:rank] ** 2).sum() / (s ** 2).sum().clamp(min=1e-30))
        return Table(n, "low-rank", {"a": FloatRows(a)}, factor=b), {"energy_kept": energy}
    if config.layout == "qr":
        if config.qr_divisor >= n:
            raise ConfigError(f"quotient-remainder divisor {config.qr_divisor} is not below the table's "
                              f"{n} ids: nothing is shared")
        q, r = fit_qr(weight, config.qr_divisor)
        fitted = q[torch.div(torch.arange(n), config.qr_divisor, rounding_mode="floor")] \
            * r[torch.arange(n) % config.qr_divisor]
        error = float((fitted - weight).norm() / weight.norm().clamp(min=1e-30))
        return Table(n, "qr", {"q": FloatRows(q), "r": FloatRows(r)}, divisor=config.qr_divisor), \
            {"fit_relative_error": error}
    return Table(n, "rows", {"rows": FloatRows(weight)}), {}


def part_counts(table: Table, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Interactions per stored row of each part (a row that serves several ids counts all of theirs)."""
    if table.layout == "rows":
        return {"rows": counts}
    if table.layout == "pruned":
        kept = table._index < table.parts["rows"].n - 1
        kept_np = kept.numpy()
        return {"rows": np.concatenate([counts[kept_np], [counts[~kept_np].sum()]])}
    if table.layout == "low-rank":
        return {"a": counts}
    ids = np.arange(table.n_ids)
    return {"q": np.bincount(ids // table.divisor, weights=counts, minlength=table.parts["q"].n),
            "r": np.bincount(ids % table.divisor, weights=counts, minlength=table.divisor)}


def restructure(model: Recommender, config: RecommendPointConfig, split: RankingSplit) -> tuple[Recommender, dict]:
    """A copy of the trained ``model`` with ``config``'s structural changes, in float (not yet recovered)."""
    model = copy.deepcopy(model).cpu().eval()
    notes: dict = {}
    if config.tower_prune_ratio:
        notes["towers"] = prune_towers(model, config.tower_prune_ratio)
    if config.dim_prune_ratio:
        notes["dims"] = prune_dims(model, config.dim_prune_ratio)
    counts = row_counts(split)
    for name in TABLES:
        table, done = to_table(getattr(model, name).weight, config, counts[name])
        setattr(model, name, table)
        if done:
            notes[name] = done
    return model.eval(), notes


def recover(model: Recommender, split: RankingSplit, settings: RecommendTrainSettings, steps: int,
            should_stop=None) -> dict:
    """``steps`` steps of the baseline's training (the epoch with the best validation NDCG@10 kept): ALS
    half-steps where the baseline was ALS and both tables still hold one float row per id (dimension
    pruning), otherwise BPR gradient steps."""
    if settings.objective == "als" and all(free_rows(model, name) is not None for name in TABLES):
        recovery = replace(settings, max_steps=int(steps), epochs=math.ceil(steps / 2), patience=0)
    else:
        per_epoch = max(1, math.ceil(split.train_users.size / settings.batch_size))
        recovery = replace(settings.for_steps(), max_steps=int(steps), epochs=math.ceil(steps / per_epoch),
                           patience=0)
    result = fit(model, split, recovery, should_stop=should_stop)
    model.eval()
    return {"steps": int(steps), "best_epoch": result.best_epoch, "val_ndcg_at_10": result.val_ndcg_at_10,
            "seconds": round(result.seconds, 2)}


def build_structure(model: Recommender, config: RecommendPointConfig, split: RankingSplit,
                    settings: RecommendTrainSettings, should_stop=None) -> tuple[Recommender, dict]:
    """``config.structure()`` applied to a copy of ``model`` and recovered: what a sweep unit builds once. Built
    at the training's thread count, so an export or a retime at another thread count rebuilds the same bits
    (a factorization's rounding depends on how its work is split)."""
    with reproducible(settings.seed, settings.threads):
        structured, notes = restructure(model, config, split)
    if config.recovery_steps:
        notes["recovery"] = recover(structured, split, settings, config.recovery_steps, should_stop)
    return structured, notes


def quantize_model(structured: Recommender, config: RecommendPointConfig, split: RankingSplit) -> Recommender:
    """A copy of ``structured`` with every table's rows at ``config.embedding_bits`` (hot rows at 8 bits with a
    hot share); the float copy for 32 bits."""
    model = copy.deepcopy(structured).eval()
    if config.embedding_bits == 32:
        return model
    counts = row_counts(split)
    for name in TABLES:
        table = getattr(model, name)
        hot_counts = part_counts(table, counts[name])
        with torch.no_grad():
            for part, rows in list(table.parts.items()):
                hot = _hottest(hot_counts[part], config.hot_share) if config.hot_share else None
                table.parts[part] = QuantRows.from_float(rows.weight, config.embedding_bits, hot)
    return model


def compress_recommender(model: Recommender, config: RecommendPointConfig, split: RankingSplit,
                         settings: RecommendTrainSettings, should_stop=None) -> tuple[Recommender, dict]:
    """The whole point in one call: structure, recovery, quantization."""
    structured, notes = build_structure(model, config, split, settings, should_stop)
    return quantize_model(structured, config, split), notes
