"""Distillation recovery: the KL loss, recovery toward the teacher, kept sparsity, classifiers."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm import distill, prune


def test_kd_loss_is_zero_for_equal_logits_and_positive_otherwise():
    t = torch.randn(2, 5, 11)
    assert float(distill.kd_loss(t, t, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill.kd_loss(t + torch.randn_like(t), t, 2.0)) > 0


def _kl_to_teacher(student, teacher, ids):
    with torch.no_grad():
        return float(distill.kd_loss(student(input_ids=ids).logits, teacher(input_ids=ids).logits, 1.0))


def test_distillation_moves_a_pruned_lm_toward_its_teacher_and_keeps_it_sparse(tiny_lm):
    teacher = tiny_lm.model
    student = copy.deepcopy(teacher)
    prune.prune_model(student, "magnitude", 0.5)
    data = torch.randint(0, 300, (8, 32), generator=torch.Generator().manual_seed(0))
    before = _kl_to_teacher(student, teacher, data)
    result = distill.recover(student, teacher, data, steps=15, batch_size=4, lr=3e-3)
    assert result["steps"] == 15 and result["recovery"] == "distill"
    assert _kl_to_teacher(student, teacher, data) < 0.7 * before
    q = student.model.layers[0].self_attn.q_proj.weight
    assert float((q == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    assert all(p.requires_grad for p in student.parameters())


def test_finetune_mode_trains_on_next_tokens_without_a_teacher(tiny_lm):
    student = copy.deepcopy(tiny_lm.model)
    data = torch.randint(0, 300, (4, 16), generator=torch.Generator().manual_seed(1))
    result = distill.recover(student, None, data, steps=10, batch_size=4, mode="finetune", lr=3e-3)
    assert result["loss_last"] < result["loss_first"] and result["temperature"] is None


def test_distillation_works_for_a_classifier():
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    student = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    x = torch.randn(64, 8)
    batches = [{"x": chunk} for chunk in x.split(16)]
    forward = lambda m, b: m(b["x"])

    def gap():
        with torch.no_grad():
            return float(F.kl_div(F.log_softmax(student(x), -1), F.log_softmax(teacher(x), -1),
                                  log_target=True, reduction="batchmean"))

    before = gap()
    distill.recover(student, teacher, batches, steps=60, lr=1e-2, forward=forward, temperature=1.0)
    assert gap() < 0.5 * before


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "prune"}, "unknown recovery"), ({"steps": 0}, "at least 1 step"),
    ({"temperature": 0.0}, "positive temperature"),
])
def test_bad_recovery_settings_are_refused(tiny_lm, kwargs, match):
    options = {"steps": 1, **kwargs}
    with pytest.raises(ConfigError, match=match):
        distill.recover(tiny_lm.model, tiny_lm.model, torch.zeros(2, 4, dtype=torch.long), **options)


def test_distillation_needs_the_teacher(tiny_lm):
    with pytest.raises(ConfigError, match="teacher"):
        distill.recover(tiny_lm.model, None, torch.zeros(2, 4, dtype=torch.long), steps=1)


def _feature_gap(student, teacher, ids):
    with torch.no_grad():
        _, hs = distill.lm_logits_and_hidden(student, ids)
        _, ht = distill.lm_logits_and_hidden(teacher, ids)
        return float(distill.hidden_state_loss(hs, ht))


def test_feature_distillation_pulls_each_block_toward_the_teacher_and_keeps_sparsity(tiny_lm):
    teacher = tiny_lm.model
    data = torch.randint(0, 300, (8, 32), generator=torch.Generator().manual_seed(0))
    pruned = copy.deepcopy(teacher)
    prune.prune_model(pruned, "magnitude", 0.5)
    logits_only, with_features = copy.deepcopy(pruned), copy.deepcopy(pruned)
    assert _feature_gap(teacher, teacher, data) == pytest.approx(0.0, abs=1e-9)
    before = _feature_gap(pruned, teacher, data)
    distill.recover(logits_only, teacher, data, steps=15, batch_size=4, lr=3e-3)
    result = distill.recover(with_features, teacher, data, steps=15, batch_size=4, lr=3e-3, hidden_weight=1.0)
    assert result["hidden_weight"] == 1.0
    assert _feature_gap(with_features, teacher, data) < min(0.7 * before, _feature_gap(logits_only, teacher, data))
    q = with_features.model.layers[0].self_attn.q_proj.weight
    assert float((q == 0).float().mean()) == pytest.approx(0.5, abs=0.01)


def test_the_kd_and_label_mix_is_alpha_kd_plus_one_minus_alpha_ce(tiny_lm):
    teacher = tiny_lm.model
    student = copy.deepcopy(teacher)
    prune.prune_model(student, "magnitude", 0.5)
    data = torch.randint(0, 300, (8, 32), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        first = data[:4]
        logits = student(input_ids=first).logits
        kd = float(distill.kd_loss(logits, teacher(input_ids=first).logits, 2.0))
        ce = float(distill.lm_next_token_loss(logits, first))
    result = distill.recover(student, teacher, data, steps=3, batch_size=4, lr=3e-3, alpha=0.25, temperature=2.0)
    assert result["alpha"] == 0.25
    assert result["loss_first"] == pytest.approx(0.25 * kd + 0.75 * ce, rel=1e-4)


@pytest.mark.parametrize("kwargs, match", [({"alpha": 1.5}, "alpha"), ({"hidden_weight": -1.0}, "hidden_weight")])
def test_bad_mix_weights_are_refused(tiny_lm, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        distill.recover(tiny_lm.model, tiny_lm.model, torch.zeros(2, 4, dtype=torch.long), steps=1, **kwargs)
