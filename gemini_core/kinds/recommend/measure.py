"""Measuring one recommender point: the one place its figures are made (sweeps, export, evaluate and retime all
call it).

- **Ranking quality** on the test split (``metrics.evaluate``): NDCG@10, HR@10 and AUC of the held-out item
  among its 99 sampled negatives, Recall@20 / NDCG@20 over the full catalogue, each with its bootstrap
  interval over users and every user's value (the ``ndcg@10`` quality metric pairs points user by user).
- **Bytes**: the id-indexed tables as stored (``embedding_bytes``: packed codes, float16 row scales and
  offsets, bit masks, fallback rows, item biases), the rest (``dense_bytes``), and ``size_bytes``, the bytes
  of the safetensors file an export writes (the serialized bytes themselves, not an estimate).
- **Scoring latency** for one user against 100 and 1,000 candidate items (``score_candidates``: the user's
  vector, the candidates' rows looked up and dequantized, one matrix-vector product): p10 / p50 / p90 in ms
  over ``repeats`` calls after ``warmup`` calls. The calls are interleaved: every round times each model and
  each candidate count once, in a rotated order, so a change of load falls on all of them alike.
  ``latency_ms_p50`` is the 1,000-candidate time. A catalogue smaller than 1,000 items gives candidates drawn
  with replacement (the lookups cost the same). Users and candidates are drawn with a fixed seed.
- **Throughput**: users per second when ``batch_users`` users are scored against 1,000 candidates each in
  one batched call (timed in the same rounds).
- **Peak memory**: the model's resident bytes plus the allocations of one 1,000-candidate scoring call
  (``gemini_core.measure.measure_memory``, the product's CPU profiler reading).
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Annotated

import numpy as np
import torch
from pydantic import Field, StrictBool
from torch import nn

from gemini_core.device import device_info
from gemini_core.errors import Cancelled, ConfigError
from gemini_core.kinds.recommend import metrics
from gemini_core.kinds.recommend.data import RankingSplit
from gemini_core.kinds.recommend.models import Recommender
from gemini_core.kinds.recommend.stored import byte_counts, serialize
from gemini_core.measure import measure_memory
from gemini_core.settings import Whole, settings

KIND = "recommend"
QUALITY_METRIC = metrics.QUALITY_METRIC
CANDIDATES = (100, 1000)
TIMED = 1000  # the candidate count ``latency_ms_*`` reports
SIZE_WRITTEN = "model.safetensors: packed row-wise codes with float16 scales and offsets, float32 dense layers"


@settings
class RecommendMeasureSettings:
    """How a point's speed is measured (quality always uses the whole test split)."""

    # timing dominates a point's measurement (a dequantizing lookup of 16 x 1,000 rows costs tens of ms on 2 busy
    # cores): 20 calls after 3 warm-up calls keep a point to a few seconds on the demo
    repeats: Annotated[Whole, Field(ge=1, title="measurement repeats")] = 20
    warmup: Annotated[Whole, Field(ge=0, title="measurement warmup")] = 3
    # users scored together for the throughput figure (16 x 1,000 candidate rows)
    batch_users: Annotated[Whole, Field(ge=1, title="measurement batch users")] = 16
    full_ranking: StrictBool = True  # Recall@20 / NDCG@20 over the whole catalogue too
    seed: Annotated[Whole, Field(ge=0, title="measurement seed")] = 0  # which users and candidates are timed

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "RecommendMeasureSettings":
        data = dict(data or {})
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown recommender measurement setting(s): {', '.join(unknown)}")
        return cls(**data)


def score_batch(model: Recommender, users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(len(users), C) scores: each user against its own row of ``candidates`` (user vectors computed once)."""
    user_vectors = model.user_vectors(users)
    item_vectors = model.item_vectors(candidates.reshape(-1)).reshape(*candidates.shape, -1)
    scores = (item_vectors @ user_vectors.unsqueeze(-1)).squeeze(-1)
    bias = model.item_bias_of(candidates.reshape(-1))
    return scores if bias is None else scores + bias.reshape(candidates.shape)


@dataclass
class _Inputs:
    users: list[int]  # one per round (warm-up rounds first)
    candidates: dict[int, torch.Tensor]
    batch_users: torch.Tensor
    batch_candidates: torch.Tensor


def timing_inputs(split: RankingSplit, settings: RecommendMeasureSettings) -> _Inputs:
    """The users and candidate items every timed model sees (seeded: the same for every point of a run)."""
    rng = np.random.default_rng(settings.seed)
    pool = split.test_users if split.test_users.size else np.arange(split.n_users)
    rounds = settings.warmup + settings.repeats
    users = rng.choice(pool, size=rounds).tolist()
    candidates = {count: torch.as_tensor(rng.integers(0, split.n_items, size=count), dtype=torch.long)
                  for count in CANDIDATES}
    batch = torch.as_tensor(rng.choice(pool, size=settings.batch_users), dtype=torch.long)
    batch_candidates = torch.as_tensor(rng.integers(0, split.n_items, size=(settings.batch_users, TIMED)),
                                       dtype=torch.long)
    return _Inputs([int(u) for u in users], candidates, batch, batch_candidates)


def _quantiles(seconds: list[float]) -> dict:
    ms = sorted(s * 1e3 for s in seconds)

    def at(q: float) -> float:
        return ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))]

    return {"p10": at(0.1), "p50": statistics.median(ms), "p90": at(0.9), "min": ms[0], "runs": len(ms)}


@torch.no_grad()
def time_scoring(models: list[Recommender], split: RankingSplit, settings: RecommendMeasureSettings,
                 rounds: int | None = None, should_stop: Callable[[], bool] | None = None) -> list[dict]:
    """Scoring times of every model, interleaved (see the module's docstring); one dict of figures per model.
    ``rounds``: timed rounds (default ``settings.repeats``)."""
    inputs = timing_inputs(split, settings)
    rounds = settings.repeats if rounds is None else int(rounds)
    jobs = []  # (model index, what) in one round's order
    for index in range(len(models)):
        jobs += [(index, 100), (index, 1000), (index, "batch")]
    samples = {(i, what): [] for i, what in jobs}
    for model in models:
        model.eval()
    for r in range(settings.warmup + rounds):
        if should_stop is not None and should_stop():
            raise Cancelled("stopped while timing; this point stays unmeasured")
        user = inputs.users[r % len(inputs.users)]
        shift = r % len(jobs)
        for index, what in jobs[shift:] + jobs[:shift]:
            model = models[index]
            started = time.perf_counter()
            if what == "batch":
                score_batch(model, inputs.batch_users, inputs.batch_candidates)
            else:
                model.score_candidates(user, inputs.candidates[what])
            elapsed = time.perf_counter() - started
            if r >= settings.warmup:
                samples[(index, what)].append(elapsed)
    out = []
    for index in range(len(models)):
        big, small = _quantiles(samples[(index, 1000)]), _quantiles(samples[(index, 100)])
        batch_s = statistics.median(samples[(index, "batch")])
        out.append({"latency_ms_p10": big["p10"], "latency_ms_p50": big["p50"], "latency_ms_p90": big["p90"],
                    "latency_ms_min": big["min"], "latency_runs": big["runs"], "candidates_timed": TIMED,
                    "score_100_ms_p10": small["p10"], "score_100_ms_p50": small["p50"],
                    "score_100_ms_p90": small["p90"],
                    "throughput_users_per_s": settings.batch_users / batch_s if batch_s > 0 else float("nan"),
                    "throughput_batch_users": settings.batch_users, "timing_rounds": rounds,
                    "timing_warmup": settings.warmup})
    return out


class _OneUser(nn.Module):
    """One user's scoring call as a module, for the memory profiler."""

    def __init__(self, model: Recommender):
        super().__init__()
        self.model = model

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.model.score_candidates(int(user[0]), items)


def memory(model: Recommender, split: RankingSplit, settings: RecommendMeasureSettings) -> dict:
    inputs = timing_inputs(split, settings)
    found = measure_memory(_OneUser(model), {"user": torch.tensor([inputs.users[0]]),
                                             "items": inputs.candidates[TIMED]}, "cpu")
    return {"peak_memory_bytes": found["peak_memory_bytes"], "weight_memory_bytes": found["weight_memory_bytes"]}


def stored_values(model: Recommender) -> int:
    """Values the model holds, a quantized code counting as one (what ``params`` reports)."""
    total = 0
    for module in model.modules():
        if hasattr(module, "bits") and hasattr(module, "n") and hasattr(module, "dim"):
            total += module.n * module.dim
        else:
            total += sum(p.numel() for p in module.parameters(recurse=False))
    return int(total)


def measure_recommend_point(model: Recommender, split: RankingSplit, settings: RecommendMeasureSettings,
                            should_stop: Callable[[], bool] | None = None, timing: bool = True,
                            stored: dict | None = None) -> dict:
    """Every figure of one point (quality, bytes, speed, memory, where it was measured). ``stored``: the bytes
    (``embedding_bytes``, ``dense_bytes``, ``size_bytes``, ``size_written``) and ``params`` of a model that is
    not stored in the product's layout (a TorchRec peer: its collection's own storage); None: counted here from
    the safetensors bytes an export writes."""
    started = time.perf_counter()
    model.eval()
    record = metrics.evaluate(model, split, "test", full=settings.full_ranking, should_stop=should_stop)
    if stored is None:
        blob = serialize(model)
        record.update(byte_counts(model))
        record.update({"size_bytes": len(blob), "size_written": SIZE_WRITTEN, "params": stored_values(model)})
    else:
        record.update(stored)
    record["batch_size"] = 1
    if timing:
        record.update(time_scoring([model], split, settings, should_stop=should_stop)[0])
        record.update(memory(model, split, settings))
    info = device_info(torch.device("cpu"))
    record.update({k: info[k] for k in ("device", "threads", "cores", "load_avg_1m", "host", "cpu", "cpu_flags")})
    record.update({"kind": KIND, "quality_metric": QUALITY_METRIC, "measure_settings": settings.to_dict(),
                   "measure_seconds": round(time.perf_counter() - started, 3)})
    return record
