"""Recovery by knowledge distillation for the classifiers (``--recovery distill``): the config, the
training step, the pruned model, the sweep grid and the CLI flag, on digits."""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from gemini_core.cli import main
from gemini_core.compress import prune_copy
from gemini_core.config import CompressionConfig
from gemini_core.errors import ConfigError
from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.training.distill import kd_loss
from gemini_core.training.loop import train_steps


def test_distill_is_its_own_point_and_needs_steps():
    ft = CompressionConfig(prune_method="magnitude-unstructured", prune_ratio=0.5, finetune_steps=10)
    kd = CompressionConfig(prune_method="magnitude-unstructured", prune_ratio=0.5, finetune_steps=10,
                           recovery="distill")
    assert kd.key() != ft.key() and kd.prune_key != ft.prune_key
    assert "kd10" in kd.label() and "ft10" in ft.label()
    assert CompressionConfig.from_dict(kd.to_dict()) == kd
    # Without steps there is nothing to recover: the plain point, same key as before the field existed.
    assert CompressionConfig(prune_method="magnitude-unstructured", prune_ratio=0.5, recovery="distill").key() == \
        CompressionConfig(prune_method="magnitude-unstructured", prune_ratio=0.5).key()
    with pytest.raises(ConfigError, match="unknown recovery 'distil'.*distill"):
        CompressionConfig(recovery="distil")


def _batch_kl(student, teacher, split):
    with torch.no_grad():
        batch = next(iter(split.batches(512, shuffle=False, seed=0)))
        return float(kd_loss(student(**batch.inputs), teacher(**batch.inputs), 1.0))


def test_train_steps_with_a_teacher_distils_toward_its_logits(digits):
    scenario, baseline = digits
    teacher = baseline.model
    student = copy.deepcopy(teacher)
    torch.manual_seed(0)
    with torch.no_grad():  # damage the student so there is something to recover
        for p in student.parameters():
            p.add_(torch.randn_like(p) * 0.3 * p.std())
    before = _batch_kl(student, teacher, scenario.splits.val)
    train_steps(student, scenario.splits.train, 20, lr=1e-3, batch_size=64, teacher=teacher)
    assert _batch_kl(student, teacher, scenario.splits.val) < 0.7 * before


def test_distill_recovery_runs_keeps_sparsity_and_differs_from_finetuning(digits):
    scenario, baseline = digits
    common = {"prune_method": "magnitude-unstructured", "prune_ratio": 0.5, "finetune_steps": 15}
    ft = prune_copy(baseline.model, CompressionConfig(**common), scenario)
    kd = prune_copy(baseline.model, CompressionConfig(**common, recovery="distill"), scenario)
    ft_weights, kd_weights = dict(ft.model.named_parameters()), dict(kd.model.named_parameters())
    assert any(not torch.equal(ft_weights[n], kd_weights[n]) for n in ft_weights)
    assert kd.achieved_ratio == pytest.approx(ft.achieved_ratio) and kd.achieved_ratio > 0.45
    for name, w in kd_weights.items():  # the same weights are pruned: masks are kept while recovering
        if w.dim() > 1:
            assert torch.equal(w == 0, ft_weights[name] == 0) or (w == 0).float().mean() < 0.01
    # The baseline (teacher) is untouched.
    with torch.no_grad():
        batch = next(iter(scenario.splits.val.batches(64, shuffle=False, seed=0)))
        logits = baseline.model(**batch.inputs)
    assert F.softmax(logits, -1).argmax(-1).eq(batch.labels).float().mean() > 0.9


def test_sweep_grid_adds_distilled_points_next_to_finetuned_ones():
    spec = SweepSpec.from_strings(prune_methods="magnitude-unstructured", prune_ratios="0.5", bits="32,8",
                                  finetune_steps="10", recoveries="finetune,distill")
    configs = spec.configs()
    distilled = [c for c in configs if c.recovery == "distill"]
    assert len(distilled) == 2 and {c.bits for c in distilled} == {32, 8}
    assert all(c.prunes and c.finetune_steps == 10 for c in distilled)
    assert sum(c.recovery == "finetune" and c.prunes for c in configs) == 2
    only = SweepSpec.from_strings(prune_methods="none,magnitude-unstructured", prune_ratios="0.5", bits="32",
                                  finetune_steps="10", recoveries="distill").configs()
    # The unpruned reference has nothing to distil: it stays a plain point; the pruned one is distilled.
    assert sorted((c.prunes, c.recovery) for c in only) == [(False, "finetune"), (True, "distill")]
    assert SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).configs() == configs


def test_cli_sweep_recovery_distill_measures_both_recoveries(tmp_path, capsys):
    out = tmp_path / "points.jsonl"
    code = main(["sweep", "--prune-method", "magnitude-unstructured", "--prune-ratios", "0.5", "--bits", "32",
                 "--finetune-steps", "10", "--recovery", "finetune,distill", "--batch-size", "4",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    pruned = {r["config"].get("recovery", "finetune"): r for r in records
              if r["config"]["prune_method"] != "none"}
    assert set(pruned) == {"finetune", "distill"} and all(r["status"] == "ok" for r in pruned.values())
    assert "kd10" in pruned["distill"]["label"]
    assert main(["sweep", "--recovery", "distil"]) == 2
    assert "distil" in capsys.readouterr().err
