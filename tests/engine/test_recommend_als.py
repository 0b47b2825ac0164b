"""The recommender's ALS and sampled-softmax training (train.py's ``als`` and ``softmax`` losses, als.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gemini_core.errors import ConfigError
from gemini_core.kinds.recommend import metrics as rec_metrics
from gemini_core.kinds.recommend.als import solve_side
from gemini_core.kinds.recommend.data import demo_log, leave_last_out
from gemini_core.kinds.recommend.train import RecommendTrainSettings, train_recommender


@pytest.fixture(scope="module")
def demo_split():
    return leave_last_out(demo_log(seed=0, users=120, items_per_cluster=20), seed=0)


def test_one_half_step_is_the_weighted_least_squares_solution():
    generator = torch.Generator().manual_seed(0)
    fixed = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    rows = torch.tensor([0, 0, 1, 2, 2, 2])
    cols = torch.tensor([1, 4, 0, 2, 3, 6])
    extra = torch.tensor([5.0, 5.0, 2.0, 5.0, 1.0, 5.0], dtype=torch.float64)
    l2 = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    got = solve_side(fixed, rows, cols, 4, extra, torch.cat([l2, torch.tensor([1.0], dtype=torch.float64)]))
    for r in range(3):
        target = np.zeros(7)
        weight = np.ones(7)
        for c, w in zip(cols[rows == r].tolist(), extra[rows == r].tolist()):
            target[c], weight[c] = 1.0, 1.0 + w
        y = fixed.numpy()
        # the row minimising sum_c weight_c (target_c - x.y_c)^2 + l2 |x|^2, by its normal equations
        want = np.linalg.solve(y.T @ (weight[:, None] * y) + float(l2[r]) * np.eye(3), y.T @ (weight * target))
        assert np.allclose(got[r].numpy(), want, atol=1e-10)
    assert torch.allclose(got[3], torch.zeros(3, dtype=torch.float64))  # no positives: the zero row


def test_auto_is_als_for_mf_and_bpr_for_towers_and_steps_after_als_are_bpr():
    assert RecommendTrainSettings().objective == "als" and RecommendTrainSettings().penalty == 0.3
    assert RecommendTrainSettings(model="two-tower").objective == "bpr"
    assert RecommendTrainSettings(model="two-tower").penalty == 1e-4
    steps = RecommendTrainSettings(l2=2.0).for_steps()
    assert steps.objective == "bpr" and steps.penalty == 1e-4
    assert RecommendTrainSettings(loss="softmax").for_steps().objective == "softmax"
    with pytest.raises(ConfigError, match="als loss solves a matrix factorization"):
        RecommendTrainSettings(model="two-tower", loss="als")


def test_als_learns_repeats_bit_for_bit_and_its_loss_falls(demo_split):
    settings = RecommendTrainSettings(dim=16, epochs=4, patience=0)
    first, second = train_recommender(demo_split, settings), train_recommender(demo_split, settings)
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [h["loss"] for h in first.history[:-1]]
    # each half-step is an exact minimisation with the other side fixed: the objective never rises
    assert all(later <= earlier + 1e-6 for earlier, later in zip(losses, losses[1:]))
    record = rec_metrics.evaluate(first.model, demo_split, full=False)
    assert record["hr_at_10_ci95"][0] > 0.3  # random ranking: 0.1
    assert first.val_ndcg_at_10 == max(h["val_ndcg_at_10"] for h in first.history[:-1])


def test_sampled_softmax_learns_the_demo(demo_split):
    result = train_recommender(demo_split, RecommendTrainSettings(loss="softmax", negatives=16, dim=16, epochs=8,
                                                                        batch_size=128))
    record = rec_metrics.evaluate(result.model, demo_split, full=False)
    assert record["hr_at_10_ci95"][0] > 0.3


def test_an_als_model_recovers_by_als_where_rows_are_free_and_by_bpr_elsewhere(demo_split):
    from gemini_core.kinds.recommend.compress import RecommendPointConfig, build_structure

    settings = RecommendTrainSettings(dim=16, epochs=4, patience=0)
    model = train_recommender(demo_split, settings).model
    pruned, notes = build_structure(model, RecommendPointConfig(dim_prune_ratio=0.25, recovery_steps=4),
                                    demo_split, settings)
    # 4 half-steps: two ALS epochs, each measured on validation
    assert notes["recovery"]["best_epoch"] in (1, 2) and pruned.user_embedding.embedding_dim == 12
    unrecovered, _ = build_structure(model, RecommendPointConfig(dim_prune_ratio=0.25), demo_split, settings)
    assert not torch.equal(pruned.item_embedding.parts["rows"].weight, unrecovered.item_embedding.parts["rows"].weight)
    # a low-rank table has no free row per id: BPR steps (the epoch count follows the batches, not 2 per epoch)
    _, notes = build_structure(model, RecommendPointConfig(rank=4, recovery_steps=3), demo_split, settings)
    assert notes["recovery"]["steps"] == 3 and notes["recovery"]["best_epoch"] == 1
