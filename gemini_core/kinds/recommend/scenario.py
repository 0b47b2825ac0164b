"""The ``recommend`` scenario: an interaction log (the SYNTHETIC demo by default, or ``data``: the user's CSV /
TSV with a user and an item column, optionally a rating or click label and a time, and ``items``: an item
file with texts), turned into implicit feedback and split leave-last-out per user with 99 sampled negatives.

It registers itself in the scenarios registry like every scenario file, but lives here, beside the
recommender it builds: ``scenarios/`` sits below the kinds' folders in the layers, so a file there could not
import this kind's data and models. The kind's description names this module, and ``gemini_core.scenarios``
imports it when scenarios are listed or built.
"""
from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

from gemini_core.errors import DataError, GeminiError
from gemini_core.kinds.recommend.data import InteractionLog, RankingSplit, demo_log, implicit, leave_last_out, read_log
from gemini_core.kinds.recommend.models import Recommender, encode_texts
from gemini_core.kinds.recommend.train import RecommendTrainSettings, new_model
from gemini_core.progress import ProgressFn
from gemini_core.scenarios.base import PruneSpec, Scenario
from gemini_core.scenarios.registry import register_scenario

OPTIONS = ("data", "items", "user_column", "item_column", "label_column", "time_column", "item_id_column",
           "text_columns", "header", "threshold")
SPLIT_SEED = 0  # the split (held-out items, sampled negatives) is part of the data: fixed, not a training seed


@register_scenario("recommend", label="recommend: your interactions CSV/TSV (user, item, optional rating and time) "
                                      "or the SYNTHETIC demo; ranking quality (NDCG@10) on held-out interactions",
                   data_kind="table", seconds_per_point=5.0, seconds_per_setting=10.0, seconds_to_train=30.0)
class RecommendScenario(Scenario):
    name = "recommend"
    domain = "recommendation"
    default_train = RecommendTrainSettings()

    def __init__(self, data: str | None = None, items: str | None = None, user_column: str | None = None,
                 item_column: str | None = None, label_column: str | None = None, time_column: str | None = None,
                 item_id_column: str | None = None, text_columns=None, header="infer", threshold=None,
                 **unexpected) -> None:
        super().__init__()
        if unexpected:
            raise GeminiError(f"scenario 'recommend' does not use {', '.join(sorted(unexpected))}")
        self.data, self.items = (str(data) if data else None), (str(items) if items else None)
        if self.data is None and any(v for v in (items, user_column, item_column, label_column, time_column,
                                                  item_id_column, text_columns)):
            raise DataError("the recommend scenario's columns name columns of your data: give data too "
                            "(without it the scenario uses its SYNTHETIC demo)")
        if self.data is not None and not (user_column and item_column):
            raise DataError("name the user and the item columns of your interaction file")
        self.columns = {"user_column": user_column, "item_column": item_column, "label_column": label_column,
                        "time_column": time_column, "item_id_column": item_id_column, "text_columns": text_columns}
        self.header = header
        try:
            self.threshold = float(threshold) if threshold not in (None, "") else None
        except (TypeError, ValueError):
            raise DataError(f"threshold {threshold!r} is not a number") from None
        self.description = ("SYNTHETIC demo: made-up users and items in latent clusters, item texts from cluster "
                            "words" if self.data is None else f"interactions from {self.data}")
        self._log: InteractionLog | None = None
        self._split: RankingSplit | None = None
        self._text: torch.Tensor | None = None

    @property
    def log(self) -> InteractionLog:
        """The implicit-feedback log (the positives)."""
        if self._log is None:
            if self.data is None:
                raw = demo_log(SPLIT_SEED)
            else:
                raw = read_log(self.data, items_path=self.items, header=self.header, **self.columns)
            self._log = implicit(raw, self.threshold)
        return self._log

    @property
    def split(self) -> RankingSplit:
        if self._split is None:
            self._split = leave_last_out(self.log, SPLIT_SEED)
        return self._split

    def text_features(self, progress: ProgressFn | None = None, should_stop=None) -> torch.Tensor | None:
        """The item texts' MiniLM vectors (encoded once, cached), None when the data has no item texts."""
        if self.log.item_texts is None:
            return None
        if self._text is None:
            self._text = encode_texts(self.log.item_texts, progress, should_stop)
        return self._text

    def build_model(self, settings: RecommendTrainSettings | None = None) -> Recommender:
        """A fresh, untrained model of ``settings.model`` for this data (seed it yourself, or train it with
        ``train.train_recommender``, which does)."""
        settings = settings or self.default_train
        features = self.text_features() if settings.model == "text-two-tower" else None
        return new_model(self.split, settings, features)

    def prune_spec(self, model: nn.Module) -> PruneSpec:
        """Structured pruning may shrink the towers' hidden layers, never their last layers (the dot product
        pairs their outputs); matrix factorization has no layer to prune."""
        outputs = model.tower_output_layers() if hasattr(model, "tower_output_layers") else []
        return PruneSpec(ignored_layers=list(outputs))

    def load_splits(self):
        raise GeminiError("the recommend scenario has a ranking split, not labelled splits; use its split")

    def arch(self) -> dict:
        return {"scenario": "recommend", "users": self.log.n_users, "items": self.log.n_items}

    def fingerprint(self) -> str:
        blob = json.dumps([self.log.fingerprint(), self.split.fingerprint("test"), self.split.fingerprint("val")])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> dict:
        return {"scenario": "recommend", "scenario_options": {k: v for k, v in self.options.items() if v is not None},
                "domain": self.domain, **self.log.describe(), **self.split.describe(),
                "data_fingerprint": self.fingerprint()}
