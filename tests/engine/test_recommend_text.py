"""The text two-tower model end to end through the product's sweep: a tiny log whose item file gives titles, the
packaged MiniLM encoding them once (cached in the home folder), training, compression and measurement."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gemini_core.kinds.recommend import models
from gemini_core.kinds.recommend.measure import RecommendMeasureSettings
from gemini_core.kinds.recommend.points import RecommendSweepSpec
from gemini_core.kinds.recommend.train import RecommendTrainSettings

WORDS = (("space", "rocket", "planet"), ("love", "wedding", "romance"), ("murder", "detective", "crime"))


def write_files(folder: Path, users: int = 48, items: int = 180, seed: int = 0) -> tuple[Path, Path]:
    """A click log where each user picks from one of three topics, and an item file whose titles name the topic
    (items are more than the scenario's 99 negatives per user)."""
    rng = np.random.default_rng(seed)
    rows = ["user,item,time"]
    for user in range(users):
        own = np.flatnonzero(np.arange(items) % 3 == user % 3)
        picked = rng.choice(own, size=int(rng.integers(5, 9)), replace=False)
        rows += [f"u{user},i{item},{100 * user + t}" for t, item in enumerate(picked)]
    log = folder / "log.csv"
    log.write_text("\n".join(rows) + "\n", encoding="utf-8")
    titles = ["item_id,title"] + [f"i{item},{' '.join(rng.choice(WORDS[item % 3], size=2))} story {item}"
                                  for item in range(items)]
    catalogue = folder / "items.csv"
    catalogue.write_text("\n".join(titles) + "\n", encoding="utf-8")
    return log, catalogue


def test_the_text_two_tower_runs_through_the_sweep(tmp_path, monkeypatch):
    from gemini_core.results.store import Store
    from gemini_core.scenarios import get_scenario
    from gemini_core.workflows.sweep import run_sweep

    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(models, "_TEXT_CACHE", {})
    log, catalogue = write_files(tmp_path)
    options = {"data": str(log), "items": str(catalogue), "user_column": "user", "item_column": "item",
               "time_column": "time", "item_id_column": "item_id", "text_columns": "title"}
    scenario = get_scenario("recommend", **options)
    titles = dict(zip(scenario.log.item_ids, scenario.log.item_texts))
    assert titles["i0"].endswith("story 0") and titles["i7"].endswith("story 7")
    train = RecommendTrainSettings(model="text-two-tower", dim=8, hidden=16, epochs=4, patience=0, lr=0.02,
                                   batch_size=64)
    spec = RecommendSweepSpec(bits=(4,), tower_prune_ratios=(0.5,), recovery_steps=2, train=train,
                              measure=RecommendMeasureSettings(repeats=2, warmup=1, batch_users=4))
    records = list(run_sweep(scenario, spec, Store(tmp_path / "store.sqlite")))
    assert [r["label"] for r in records] == [c.label() for c in spec.points()]
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    reference = records[0]
    # random ranking of 100 candidates: HR@10 0.1; the titles name each user's topic
    assert reference["hr_at_10"] > 0.3
    assert all(r["embedding_bytes"] < reference["embedding_bytes"] for r in records
               if r["label"].endswith("int4 rows"))
    cached = list((tmp_path / "home" / "cache" / "recommend-text").glob("*.safetensors"))
    assert len(cached) == 1  # encoded once, kept for the next run
    # a second scenario of the same files reads the vectors from the cache, not MiniLM
    monkeypatch.setattr(models, "_TEXT_CACHE", {})
    monkeypatch.setattr("transformers.AutoModel.from_pretrained",
                        lambda *a, **k: pytest.fail("MiniLM was loaded although the vectors were cached"))
    again = get_scenario("recommend", **options).text_features()
    assert again.shape == (scenario.log.n_items, 384)
