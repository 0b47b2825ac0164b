"""The recommender's baseline: trained once per (data, split, settings) through ``train.train_recommender`` and
cached under the home folder's baselines, as the classifiers' are (``training/baseline.py``): a safetensors
file and a JSON description, published atomically; a later sweep, sensitivity analysis, export or retime of
the same data and settings loads it instead of training again.

The key holds everything that changes the weights: this cache's format (the training code), the data and the
split (the scenario's fingerprint: log, held-out items, negatives), the architecture, every training setting
(seed and thread count included: training is bit-for-bit reproducible on the CPU) and, for a text model, the
hash of the item texts' encoder and texts. The recommender trains on the CPU.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gemini_core.errors import Cancelled, CheckpointError
from gemini_core.fsio import publish_folder, staging_folder
from gemini_core.kinds.recommend.models import Recommender, text_cache_key
from gemini_core.kinds.recommend.scenario import RecommendScenario
from gemini_core.kinds.recommend.train import RecommendTrainSettings, new_model, train_recommender
from gemini_core.paths import baselines_dir
from gemini_core.progress import ProgressFn, notify

BASELINE_FORMAT = 1
WEIGHTS, META = "model.safetensors", "meta.json"


@dataclass
class RecommendBaseline:
    """A trained recommender and what finds and describes it."""

    model: Recommender
    key: str
    settings: RecommendTrainSettings
    history: list[dict]
    best_epoch: int
    val_ndcg_at_10: float
    stopped: str
    seconds: float
    cached: bool
    path: Path

    def describe(self) -> dict:
        return {"baseline_key": self.key, "train_settings": self.settings.to_dict(), "best_epoch": self.best_epoch,
                "val_ndcg_at_10": self.val_ndcg_at_10, "stopped": self.stopped,
                "train_seconds": round(self.seconds, 2), "cached": self.cached, "path": str(self.path),
                "arch": self.model.arch()}


def baseline_key(scenario: RecommendScenario, settings: RecommendTrainSettings) -> str:
    content = {"format": BASELINE_FORMAT, "kind": "recommend", "data": scenario.fingerprint(),
               "arch": scenario.arch(), "train": settings.to_dict()}
    if settings.model == "text-two-tower" and scenario.log.item_texts is not None:
        content["texts"] = text_cache_key(scenario.log.item_texts)
    blob = json.dumps(content, sort_keys=True)
    return f"recommend-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def get_recommend_baseline(scenario: RecommendScenario, settings: RecommendTrainSettings | None = None,
                           progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
                           retrain: bool = False) -> RecommendBaseline:
    """The cached baseline of ``scenario`` and ``settings``, trained (and cached) when there is none."""
    settings = settings or scenario.default_train
    key = baseline_key(scenario, settings)
    folder = baselines_dir() / key
    if (folder / WEIGHTS).exists() and (folder / META).exists() and not retrain:
        try:
            return _load(scenario, settings, key, folder, progress)
        except (CheckpointError, OSError, ValueError, RuntimeError, KeyError):
            pass  # a damaged cache entry is trained again and replaced
    notify(progress, "message", f"training the {settings.model} recommender ({key})")
    result = train_recommender(scenario.split, settings, text_features=_texts(scenario, settings),
                               progress=progress, should_stop=should_stop)
    if should_stop is not None and should_stop():
        raise Cancelled("training was cancelled; no baseline was saved")
    model = result.model.cpu().eval()
    complete = (folder / WEIGHTS).exists() and (folder / META).exists()
    with staging_folder(folder) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS))
        (tmp / META).write_text(json.dumps({
            "key": key, "kind": "recommend", "arch": model.arch(), "train_settings": settings.to_dict(),
            "history": result.history, "best_epoch": result.best_epoch, "val_ndcg_at_10": result.val_ndcg_at_10,
            "stopped": result.stopped, "seconds": result.seconds, "data": scenario.describe()},
            indent=1, default=float), encoding="utf-8")
        if not publish_folder(tmp, folder, replace=retrain or not complete):
            # another process cached this baseline while we trained: use its weights, so every run of this
            # key measures the same model
            return _load(scenario, settings, key, folder, progress)
    return RecommendBaseline(model, key, settings, result.history, result.best_epoch, result.val_ndcg_at_10,
                             result.stopped, result.seconds, False, folder)


def _texts(scenario: RecommendScenario, settings: RecommendTrainSettings) -> torch.Tensor | None:
    return scenario.text_features() if settings.model == "text-two-tower" else None


def _load(scenario, settings, key, folder: Path, progress) -> RecommendBaseline:
    meta = json.loads((folder / META).read_text(encoding="utf-8"))
    model = new_model(scenario.split, settings, _texts(scenario, settings))
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    model.eval()
    notify(progress, "cached", f"baseline {key} loaded from the cache", baseline_key=key)
    return RecommendBaseline(model, key, settings, meta.get("history", []), int(meta.get("best_epoch", 0)),
                             float(meta.get("val_ndcg_at_10", float("nan"))), str(meta.get("stopped", "")),
                             float(meta.get("seconds", 0.0)), True, folder)
