"""Per-table sensitivity of a recommender: quantize ONE embedding table (users or items) row-wise at a time, at
each bit width, and measure NDCG@10 on the validation split (the test split stays held out), to see which
table to keep at higher precision.

The profile has the shape every kind fills (``results.sensitivity.SensitivityProfile``; rows = tables,
``drop_points`` = the NDCG@10 loss in points, ``params["quality"] == "ndcg@10"``), so the store, the CLI
table and the heatmap read it alike. ``keep_high_precision`` names the tables whose quantization hurts most.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from typing import Annotated

from pydantic import BeforeValidator, Field

from gemini_core.errors import Cancelled, ConfigError
from gemini_core.kinds.recommend import metrics
from gemini_core.kinds.recommend.baseline import get_recommend_baseline
from gemini_core.kinds.recommend.points import read_train_settings
from gemini_core.kinds.recommend.scenario import RecommendScenario
from gemini_core.kinds.recommend.stored import TABLES, byte_counts
from gemini_core.kinds.recommend.tables import QuantRows, Table
from gemini_core.kinds.recommend.train import RecommendTrainSettings
from gemini_core.progress import ProgressFn, notify
from gemini_core.results.sensitivity import SensitivityProfile, most_sensitive
from gemini_core.results.store import Store
from gemini_core.settings import Items, Whole, settings

DESCRIPTIVE = ("quality", "method", "ratios", "rows", "keep_high_precision")


@settings
class RecommendSensitivityParams:
    bits: Annotated[Items[Whole], Field(min_length=1)] = (8, 4, 2)  # each table quantized alone at each
    # the baseline analysed
    train: Annotated[RecommendTrainSettings, BeforeValidator(read_train_settings)] = RecommendTrainSettings()
    keep: Annotated[Whole, Field(ge=1)] = 1  # how many of the most sensitive tables to name for higher precision

    def __post_init__(self) -> None:
        if any(b not in (8, 4, 2) for b in self.bits):
            raise ConfigError(f"recommender sensitivity bits {list(self.bits)}: choose from 8, 4, 2")
        object.__setattr__(self, "bits", tuple(sorted(self.bits, reverse=True)))

    def to_dict(self) -> dict:
        return {"bits": list(self.bits), "train": self.train.to_dict(), "keep": self.keep, "quality": "ndcg@10",
                "method": "row-wise", "ratios": [], "rows": "embedding table"}

    @classmethod
    def from_dict(cls, data: dict) -> "RecommendSensitivityParams":
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(data) - names - set(DESCRIPTIVE)
        if extra:
            raise ConfigError(f"unknown recommender sensitivity setting(s): {', '.join(sorted(extra))}")
        return cls(**{k: v for k, v in data.items() if k in names})


def analysis_id(baseline_key: str, params: RecommendSensitivityParams) -> str:
    blob = json.dumps({"baseline": baseline_key, "params": params.to_dict()}, sort_keys=True)
    return "recommend-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def with_table_quantized(model, name: str, bits: int):
    """A copy of ``model`` with table ``name`` stored row-wise at ``bits`` (the other table untouched)."""
    out = copy.deepcopy(model)
    weight = getattr(out, name).weight.detach()
    setattr(out, name, Table(weight.shape[0], "rows", {"rows": QuantRows.from_float(weight, bits)}))
    return out.eval()


def analyse_recommender(scenario: RecommendScenario, params: RecommendSensitivityParams | None = None,
                        store: Store | None = None, force: bool = False, progress: ProgressFn | None = None,
                        should_stop: Callable[[], bool] | None = None,
                        on_profile: Callable[[SensitivityProfile], None] | None = None) -> SensitivityProfile:
    """Quantize each table alone at each bit width; stored in the run store as it grows."""
    params = params or RecommendSensitivityParams()
    store = store or Store()
    baseline = get_recommend_baseline(scenario, params.train, progress=progress, should_stop=should_stop)
    found_id = analysis_id(baseline.key, params)
    found = None if force else store.get_analysis(found_id)
    if found is not None and found["status"] == "complete":
        return SensitivityProfile.from_dict(found["result"])
    split = scenario.split
    started = time.perf_counter()
    reference = metrics.evaluate(baseline.model, split, "val", full=False)
    base = {k: reference[k] for k in ("ndcg_at_10", "hr_at_10", "auc", "users_n")}
    base["embedding_bytes"] = byte_counts(baseline.model)["embedding_bytes"]
    profile = SensitivityProfile(found_id, scenario.name, baseline.key, params.to_dict(), "cpu", split="val",
                                 examples=int(reference["users_n"]), baseline=base,
                                 total_steps=len(TABLES) * len(params.bits))

    def keep(status: str) -> None:
        profile.status, profile.seconds = status, round(time.perf_counter() - started, 2)
        store.save_analysis(found_id, baseline.key, scenario.name, params.to_dict(), profile.to_dict(), status)
        if on_profile is not None:
            on_profile(profile)

    try:
        for name in TABLES:
            weight = getattr(baseline.model, name).weight.detach()
            results = []
            for bits in params.bits:
                if should_stop is not None and should_stop():
                    raise Cancelled("sensitivity stopped")
                model = with_table_quantized(baseline.model, name, bits)
                value = metrics.evaluate(model, split, "val", full=False)["ndcg_at_10"]
                drop = (reference["ndcg_at_10"] - value) * 100.0
                results.append({"bits": bits, "ndcg_at_10": value, "drop_points": drop,
                                "embedding_bytes": byte_counts(model)["embedding_bytes"]})
                profile.done_steps += 1
                notify(progress, "step", f"{name}: {bits}-bit NDCG@10 {100 * value:.2f}% ({-drop:+.2f} points)",
                       phase="quantization", item=f"{name} at {bits} bits", done=profile.done_steps,
                       total=profile.total_steps)
            profile.quantization.append({
                "layer": name, "params": int(weight.numel()), "results": results, "kind": "embedding table",
                "max_abs_over_std": float(weight.abs().max() / weight.std().clamp(min=1e-12))})
            keep("running")
    except Cancelled:
        keep("cancelled")
        return profile
    profile.params["keep_high_precision"] = keep_high_precision(profile, params.keep)
    keep("complete")
    return profile


def keep_high_precision(profile: SensitivityProfile, count: int) -> list[dict]:
    """The ``count`` tables whose quantization at the lowest profiled bit width costs the most NDCG@10."""
    return most_sensitive(profile, count, "table", "ndcg_drop_points")
