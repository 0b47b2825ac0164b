"""Adaptive training: schedules, the validation guard, masks, QAT, and the result as a baseline."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from bench.experiments.gradual_vs_oneshot import compare_gradual_vs_oneshot
from gemini_core.adaptive import AdaptiveSettings, adaptive_key, load_adaptive_baseline, train_adaptive
from gemini_core.adaptive import trainer as ad
from gemini_core.config import CompressionConfig
from gemini_core.errors import Cancelled, ConfigError
from gemini_core.training.schedules import PruneSchedule, make_lr_policy, warmup_cosine_factor

FAST = {"min_runs": 2, "min_seconds": 0.0}


# -- schedules -------------------------------------------------------------------------------------
def test_cubic_and_linear_schedules_plan_the_ratios_per_epoch():
    cubic = PruneSchedule("cubic", final=0.5, start=0, end=4)
    # Zhu and Gupta: r_t = r_f + (r_0 - r_f)(1 - (t - t0)/(n dt))^3
    assert cubic.ratios(7) == pytest.approx([0.0, 0.5 * (1 - 0.75 ** 3), 0.5 * (1 - 0.5 ** 3),
                                             0.5 * (1 - 0.25 ** 3), 0.5, 0.5, 0.5])
    assert cubic.ratios(5)[1] == pytest.approx(0.2890625)
    linear = PruneSchedule("linear", final=0.6, start=1, end=4)
    assert linear.ratios(6) == pytest.approx([0.0, 0.0, 0.2, 0.4, 0.6, 0.6])
    assert PruneSchedule("cubic", final=0.5, start=2, end=2).ratios(4) == [0.0, 0.0, 0.5, 0.5]
    with pytest.raises(ConfigError, match="unknown pruning schedule"):
        PruneSchedule("exp")


def test_learning_rate_policies():
    policy = make_lr_policy("warmup-cosine", 1e-2, 100)
    seen = []
    for _ in range(100):
        seen.append(policy.lr)
        policy.step()
    assert seen[0] == pytest.approx(1e-2 / 5) and max(seen) == pytest.approx(1e-2)
    assert seen[-1] < 1e-3 and all(a >= b for a, b in zip(seen[5:], seen[6:]))  # decays after warm-up
    assert warmup_cosine_factor(99, 100) == pytest.approx(0.01, abs=2e-3)

    one = make_lr_policy("one_cycle", 1e-2, 50)  # torch's OneCycleLR underneath
    peak = max(one.lr for _ in range(50) if one.step() is None)
    assert peak == pytest.approx(1e-2, rel=1e-3)

    constant = make_lr_policy("constant", 3e-3, 10)
    constant.step()
    assert constant.lr == 3e-3 and constant.end_epoch(0.1) == {}

    adaptive = make_lr_policy("adaptive", 1e-2, 20)
    for _ in range(20):
        adaptive.step()
    assert adaptive.lr == pytest.approx(1e-2)
    assert adaptive.end_epoch(0.90) == {}
    assert adaptive.end_epoch(0.80) == {"backoff": True} and adaptive.lr == pytest.approx(5e-3)  # a drop
    assert adaptive.end_epoch(0.60, structural_change=True) == {}  # pruning steps cost accuracy by design
    assert adaptive.lr == pytest.approx(5e-3)
    adaptive.end_epoch(0.85)
    changes = [adaptive.end_epoch(0.85) for _ in range(3)]  # a plateau: ReduceLROnPlateau halves the rate
    assert {"plateau": True} in changes and adaptive.lr < 5e-3
    with pytest.raises(ConfigError, match="unknown learning-rate policy"):
        make_lr_policy("cyclic", 1e-3, 10)


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs 0 must be at least 1"),
    ({"target_ratio": 1.2}, "outside [0, 0.95]"),
    ({"prune_method": "magnitude-unstructured", "target_ratio": 0.5}, "--mask modes"),
    ({"lr_policy": "cyclic"}, "unknown learning-rate policy"),
    ({"schedule": "exp"}, "unknown pruning schedule"),
    ({"guard": "panic"}, "unknown guard action"),
    ({"mask": "1:8"}, "unknown mask mode"),
    ({"tolerance": -0.1}, "must be in [0, 1]"),
    ({"qat_bits": 5}, "QAT bits 5 not supported"),
    ({"qat_granularity": "group-7"}, "unknown QAT granularity"),
    ({"epochs": 4, "end_epoch": 4}, "end epoch 4 must be between"),
    ({"epochs": 4, "start_epoch": 4}, "past the last epoch"),
    ({"lr": 0}, "lr 0.0 must be positive"),
    ({"prune_method": "none", "target_ratio": 0.5}, "nothing to prune"),
])
def test_bad_adaptive_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AdaptiveSettings(**kwargs)


# -- quantization-aware recovery ----------------------------------------------------------------------
@pytest.mark.parametrize("bits, granularity", [(4, "per-channel"), (3, "group-32"), (8, "per-tensor")])
def test_qat_trains_against_exactly_the_stored_weights(digits, bits, granularity):
    from gemini_core.techniques.qat import attach_transforms, detach_transforms, fake_quantize
    from gemini_core.techniques.quantize import quantize_weights_

    scenario, baseline = digits
    model = copy.deepcopy(baseline.model)
    attach_transforms(model, bits, granularity)
    inputs = scenario.splits.test.first(16).inputs
    faked = model(**inputs)
    faked.sum().backward()  # straight-through: every float weight gets a gradient
    assert all(p.grad is not None for p in model.parameters())
    detach_transforms(model)
    stored = copy.deepcopy(model)
    quantize_weights_(stored, bits, granularity)
    with torch.no_grad():
        assert torch.equal(faked.detach(), stored(**inputs))
    weight = torch.randn(6, 5, requires_grad=True)
    fake_quantize(weight, bits, granularity).mul(torch.arange(5.0)).sum().backward()
    assert torch.equal(weight.grad, torch.arange(5.0).expand(6, 5))


def test_recovery_field_keys_and_labels():
    # The default keeps the keys configs had before the field existed (stored points stay found).
    assert CompressionConfig().key() == "f25e687ca0def572"
    assert CompressionConfig(bits=4, granularity="group-32").key() == "2550000ea928fe61"
    qat = CompressionConfig(prune_method="l1-structured", prune_ratio=0.5, finetune_steps=20, bits=4, recovery="qat")
    plain = CompressionConfig(prune_method="l1-structured", prune_ratio=0.5, finetune_steps=20, bits=4)
    assert qat.key() != plain.key() and qat.prune_key != plain.prune_key
    assert qat.prune_key != CompressionConfig(prune_method="l1-structured", prune_ratio=0.5, finetune_steps=20,
                                              bits=3, recovery="qat").prune_key  # recovered per bit width
    assert plain.prune_key == CompressionConfig(prune_method="l1-structured", prune_ratio=0.5, finetune_steps=20,
                                                bits=3).prune_key  # fine-tuning is shared by bit widths
    assert "qat20" in qat.label() and CompressionConfig.from_dict(qat.to_dict()) == qat
    assert CompressionConfig(bits=4, finetune_steps=30, recovery="qat").prune_key[0] == "none"  # unpruned QAT
    assert CompressionConfig(bits=16, finetune_steps=30, recovery="qat").recovery == "finetune"
    assert CompressionConfig(bits=4, recovery="qat").recovery == "finetune"  # no steps, no recovery
    with pytest.raises(ConfigError, match="unknown recovery 'kd'"):
        CompressionConfig(recovery="kd")


def test_sweep_units_recover_qat_per_bit_width_and_reuse_fine_tuning():
    from gemini_core.kinds.classifier.spec import SweepSpec

    spec = SweepSpec(prune_methods=("none", "l1-structured"), prune_ratios=(0.5,), bits=(32, 4, 3),
                     finetune_steps=(20,), recoveries=("finetune", "qat"))
    units = spec.units()
    plain = [u for u in units if not u.prune_setting.is_qat and u.prune_setting != spec.control()]
    qat = [u for u in units if u.prune_setting.is_qat]
    assert len(plain) == 2 and all(len(u.configs) == 3 for u in plain)  # one pruning, every bit width
    assert [u.configs for u in units if u.prune_setting == spec.control()] == [(spec.control(),)]
    assert len(qat) == 4 and all(len(u.configs) == 1 for u in qat)  # (unpruned, pruned) x (4, 3 bits)
    assert all(u.configs[0].bits == u.prune_setting.bits for u in qat)
    assert spec.n_points() == 11 and len({c.key() for c in spec.configs()}) == 10  # + the control (a unit of its own)
    only = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.5,), bits=(32, 4), finetune_steps=(20,),
                     recoveries=("qat",))
    labels = [c.label() for u in only.units() for c in u.configs]
    assert labels == ["unpruned / 32-bit / dense", "control: unpruned ft20 / 32-bit / dense",
                      "l1-structured 50% / ft20 / 32-bit / dense",
                      "l1-structured 50% / qat20 / 4-bit per-channel / dense"]
    assert SweepSpec().to_dict() == SweepSpec.from_dict(SweepSpec().to_dict()).to_dict()
    assert "recoveries" not in SweepSpec().to_dict()  # run ids of default specs are unchanged
    with pytest.raises(ConfigError, match="unknown recovery"):
        SweepSpec.from_strings(recoveries="finetune,kd")


def test_qat_recovery_in_a_sweep_keeps_pruned_zeros(digits):
    from gemini_core.compress import compress
    from gemini_core.techniques.prune import sparsity_of

    scenario, baseline = digits
    config = CompressionConfig(prune_method="magnitude-unstructured", prune_ratio=0.6, finetune_steps=8, bits=3,
                               recovery="qat")
    compressed = compress(baseline.model, config, scenario, device="cpu")
    assert compressed.pruning.finetune_loss is not None
    spec = scenario.prune_spec(compressed.stored_model)
    assert sparsity_of(compressed.stored_model, spec) >= 0.6 - 1e-3
    pruned = compressed.pruning.model  # the float model QAT left: quantizing it is what the stored model is
    from gemini_core.techniques.quantize import quantize_weights_

    again = copy.deepcopy(pruned)
    quantize_weights_(again, 3, "per-channel")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                  compressed.stored_model.state_dict().values()))


# -- adaptive training on digits ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_digits():
    """Digits with 320 training examples (5 steps an epoch): for behaviour, not accuracy."""
    from gemini_core.scenarios import get_scenario

    scenario = get_scenario("digits")
    splits = scenario.splits
    splits.train = splits.train.take(torch.arange(320))
    return scenario


@pytest.fixture(scope="module")
def gradual(digits):
    """Gradual structured pruning to 50% while training digits (3 epochs), cached as a baseline."""
    scenario, _ = digits
    events = []
    settings = AdaptiveSettings(epochs=3, target_ratio=0.5, schedule="linear", start_epoch=0, end_epoch=2,
                                lr_policy="adaptive", tolerance=0.5)
    result = train_adaptive(scenario, settings, progress=events.append, device="cpu")
    return scenario, settings, result, events


def test_gradual_pruning_follows_the_schedule_and_lands_on_the_one_shot_architecture(gradual):
    from gemini_core.compress import prune_copy

    scenario, settings, result, events = gradual
    epochs = [e for e in events if e["event"] == "epoch"]
    planned = settings.resolved(scenario).prune_schedule().ratios(3)
    assert planned == pytest.approx([0.0, 0.25, 0.5])
    assert [e["prune_ratio_now"] for e in epochs] == pytest.approx(planned)
    assert [e["scheduled_ratio"] for e in epochs] == pytest.approx(planned)
    assert not any(e["rolled_back"] for e in epochs)
    assert epochs[0]["params"] > epochs[1]["params"] > epochs[2]["params"]
    assert epochs[0]["macs"] > epochs[2]["macs"] and all(e["lr"] > 0 for e in epochs)
    assert sum(e["event"] == "prune" for e in events) == 2
    one_shot = prune_copy(scenario.build_model(), CompressionConfig(prune_method="l2-structured", prune_ratio=0.5),
                          scenario)
    assert [p.shape for p in one_shot.model.parameters()] == [p.shape for p in result.model.parameters()]
    assert result.summary["achieved_ratio"] == 0.5 and result.test_accuracy > 0.8
    assert len(result.pruning_history) > 0 and not result.cached


def test_the_result_is_a_cached_baseline_that_reloads(gradual):
    from gemini_core.workflows.baselines import baseline_from_description

    scenario, settings, result, _ = gradual
    meta = json.loads((result.path / "meta.json").read_text())
    assert meta["kind"] == "adaptive" and meta["pruning_history"] and meta["adaptive"]["target_ratio"] == 0.5
    again = train_adaptive(scenario, settings, device="cpu")
    assert again.cached and again.key == result.key and again.test_accuracy == result.test_accuracy
    rebuilt = baseline_from_description(result.describe())
    assert rebuilt.cached and rebuilt.key == result.key
    for a, b in zip(rebuilt.model.state_dict().values(), result.model.state_dict().values()):
        assert torch.equal(a, b)
    reseeded = AdaptiveSettings(**{**settings.to_dict(), "seed": 1}).resolved(scenario)
    assert adaptive_key(scenario, reseeded) != result.key  # another seed is another baseline


def test_a_sweep_point_of_the_adaptive_baseline_exports_and_reloads_exactly(gradual, tmp_path):
    from gemini_core.kinds.classifier.spec import SweepSpec
    from gemini_core.results.store import Store
    from gemini_core.workflows import export as ex
    from gemini_core.workflows.sweep import run_sweep

    scenario, _, result, _ = gradual
    store = Store(tmp_path / "runs.sqlite")
    spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.25,), bits=(4,), batch_size=4)
    points = list(run_sweep(scenario, spec, store=store, device="cpu", latency_kwargs=FAST, baseline=result))
    assert all(p["status"] == "ok" for p in points), [p.get("error") for p in points]
    point = next(p for p in points if p["config"]["bits"] == 4)
    assert point["params"] < sum(p.numel() for p in result.model.parameters())
    path = ex.export_point(store, point["point_id"], tmp_path / "point")
    recipe = json.loads((path / "recipe.json").read_text())
    assert recipe["baseline_pruning_history"] and recipe["baseline"]["adaptive"]["key"] == result.key
    assert recipe["source"]["reproduced_sweep"] is True
    record = ex.evaluate_export(path, device="cpu", batch_size=4)
    assert record["accuracy"] == point["accuracy"] and record["accuracy_matches_record"]
    assert "adaptive training" in (path / "README.md").read_text()


def test_the_guard_rolls_back_a_step_that_costs_too_much(digits, small_digits, monkeypatch):
    _, trained = digits  # start from a trained model: the forced drop is then unmistakable
    real = ad.structured_step
    calls = []

    def sabotaged(model, scenario, method, ratio, *args, **kwargs):
        out = real(model, scenario, method, ratio, *args, **kwargs)
        calls.append(ratio)
        if len(calls) == 2:  # the second step: wreck the weights (a forced accuracy drop)
            with torch.no_grad():
                for p in model.parameters():
                    p.zero_()
        return out

    monkeypatch.setattr(ad, "structured_step", sabotaged)
    events = []
    result = train_adaptive(small_digits, AdaptiveSettings(epochs=4, target_ratio=0.5, schedule="linear",
                                                           start_epoch=0, end_epoch=3, lr=1e-3, tolerance=0.7),
                            progress=events.append, device="cpu", cache=False, init=trained)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["rolled_back"] for e in epochs] == [False, False, True, False]
    assert [e["prune_ratio_now"] for e in epochs] == pytest.approx([0.0, 1 / 6, 1 / 6, 0.5])
    assert epochs[2]["params"] == epochs[1]["params"]  # the model from before the step came back
    assert any(e["event"] == "rollback" for e in events) and result.summary["rollbacks"] == 1

    calls.clear()
    events.clear()
    train_adaptive(small_digits, AdaptiveSettings(epochs=4, target_ratio=0.5, schedule="linear", start_epoch=0,
                                                  end_epoch=3, lr=1e-3, tolerance=0.7, guard="slow"),
                   progress=events.append, device="cpu", cache=False, init=trained)
    epochs = [e for e in events if e["event"] == "epoch"]
    # the failed step (1/6 -> 1/3) is retried half as far, and the schedule is pushed back an epoch
    assert calls[:3] == pytest.approx([1 / 6, 1 / 3, 0.25])
    assert [e["prune_ratio_now"] for e in epochs] == pytest.approx([0.0, 1 / 6, 1 / 6, 0.25])
    assert epochs[2]["slowed"] and not epochs[3]["rolled_back"]


def test_masks_are_kept_while_training_and_qat_recovers_low_bits(small_digits):
    from gemini_core.techniques.prune import prunable_layers, sparsity_of
    from gemini_core.techniques.qat import has_transforms

    result = train_adaptive(small_digits, AdaptiveSettings(epochs=3, target_ratio=0.6, prune_method="none",
                                                           mask="unstructured", start_epoch=0, end_epoch=1, lr=3e-3,
                                                           qat_bits=3, patience=1),
                            device="cpu", cache=False)
    model = result.model
    assert not has_transforms(model)
    layers = prunable_layers(model, small_digits.prune_spec(model))
    assert sparsity_of(model, small_digits.prune_spec(model)) == pytest.approx(0.6, abs=0.01)
    assert all(float((m.weight == 0).float().mean()) == pytest.approx(0.6, abs=0.01) for _, m in layers)
    assert [e["qat"] for e in result.history] == [False, True, True]
    assert 0 <= result.summary["test_accuracy_quantized"] <= 1

    two_four = train_adaptive(small_digits, AdaptiveSettings(epochs=2, prune_method="none", mask="2:4", lr=3e-3),
                              device="cpu", cache=False)
    for _, module in prunable_layers(two_four.model, small_digits.prune_spec(two_four.model)):
        w = module.weight.detach().reshape(module.weight.shape[0], -1)
        if w.shape[1] % 4 == 0:
            assert int(((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) > 2).sum()) == 0


def test_cancel_caches_nothing(small_digits):
    from gemini_core.paths import baselines_dir

    before = set(baselines_dir().iterdir())
    with pytest.raises(Cancelled, match="nothing was cached"):
        train_adaptive(small_digits, AdaptiveSettings(epochs=3, lr=3e-3, seed=7), should_stop=lambda: True,
                       device="cpu")
    assert set(baselines_dir().iterdir()) == before


# -- CLI ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["train", "--adaptive", "--target-ratio", "1.5"], "target ratio 1.5 is outside"),
    (["train", "--adaptive", "--lr-policy", "cyclic"], "unknown learning-rate policy 'cyclic'"),
    (["train", "--adaptive", "--qat-bits", "5"], "QAT bits 5 not supported"),
    (["train", "--adaptive", "--nproc", "0"], "--nproc must be at least 1"),
    (["train", "--adaptive", "--epochs", "3", "--end-epoch", "3"], "end epoch 3 must be between"),
    (["train", "--target-ratio", "0.5"], "--target-ratio is an adaptive-training flag: add --adaptive"),
    (["train", "--nproc", "2"], "--nproc is an adaptive-training flag"),
    (["sweep", "--recovery", "kd"], "unknown recovery 'kd'"),
])
def test_bad_adaptive_flags_exit_2_with_one_line(argv, message, capsys):
    from gemini_core.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_compare_gradual_vs_oneshot_reports_both_arms(small_digits):
    from gemini_core.scenarios import TrainSettings

    out = compare_gradual_vs_oneshot(small_digits, target_ratio=0.5, extra_epochs=2, lr=3e-3,
                                     base_settings=TrainSettings(epochs=4, batch_size=64, lr=3e-3))
    for arm in ("baseline", "gradual", "oneshot"):
        assert {"test_accuracy", "latency_ms_p50", "params", "macs", "train_seconds"} <= set(out[arm])
    assert out["gradual"]["params"] == out["oneshot"]["params"] < out["baseline"]["params"]
    assert math.isfinite(out["oneshot"]["accuracy_right_after_pruning"])


def test_gradual_head_and_ffn_pruning_of_a_tiny_bert_matches_one_shot_and_reloads(tmp_path):
    import csv
    import random
    import shutil

    from transformers import BertConfig, BertForSequenceClassification

    from gemini_core.compress import prune_copy
    from gemini_core.scenarios import get_scenario
    from gemini_core.scenarios.hf_models import minilm_dir

    model_dir = tmp_path / "tinybert"
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=64, max_position_embeddings=64)).save_pretrained(model_dir)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (minilm_dir() / name).exists():
            shutil.copy(minilm_dir() / name, model_dir / name)
    rng = random.Random(0)
    words = "good bad great awful fine poor lovely terrible nice horrible".split()
    with open(tmp_path / "reviews.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(60):
            writer.writerow([" ".join(rng.choice(words[i % 2::2]) for _ in range(6)), ["neg", "pos"][i % 2]])
    scenario = get_scenario(f"hf:{model_dir}", data=str(tmp_path / "reviews.csv"), max_length=16)
    events = []
    result = train_adaptive(scenario, AdaptiveSettings(epochs=3, target_ratio=0.5, start_epoch=0, end_epoch=2,
                                                       lr=1e-3, batch_size=16), progress=events.append, device="cpu")
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["prune_ratio_now"] for e in epochs] == pytest.approx([0.0, 0.4375, 0.5])
    # 0.4375 already leaves 2 of 4 heads (ceil) and 32 of 64 FFN neurons (multiples of 8), as 0.5 does
    assert epochs[0]["params"] > epochs[1]["params"] == epochs[2]["params"]
    one_shot = prune_copy(scenario.build_model(), CompressionConfig(prune_method="l2-structured", prune_ratio=0.5),
                          scenario)
    assert [p.shape for p in one_shot.model.parameters()] == [p.shape for p in result.model.parameters()]
    attention = result.model.hf.bert.encoder.layer[0].attention.self
    assert attention.num_attention_heads == 2 and attention.query.out_features == 16
    reloaded = load_adaptive_baseline(scenario, result.path)
    inputs = scenario.splits.test.first(4).inputs
    with torch.no_grad():
        assert torch.allclose(reloaded.model(**inputs), result.model(**inputs), atol=1e-6)
    assert reloaded.test_accuracy == result.test_accuracy


def test_a_sweep_measures_qat_points_next_to_plain_ones(digits, tmp_path):
    from gemini_core.kinds.classifier.spec import SweepSpec
    from gemini_core.results.store import Store
    from gemini_core.workflows.sweep import run_sweep

    scenario, baseline = digits
    spec = SweepSpec(bits=(4,), granularities=("per-tensor",), finetune_steps=(5,), recoveries=("finetune", "qat"),
                     batch_size=4)
    points = list(run_sweep(scenario, spec, store=Store(tmp_path / "runs.sqlite"), device="cpu",
                            latency_kwargs=FAST, baseline=baseline))
    assert sorted(p["label"] for p in points) == ["unpruned / 32-bit / dense", "unpruned / 4-bit per-tensor / dense",
                                                  "unpruned / qat5 / 4-bit per-tensor / dense"]
    assert all(p["status"] == "ok" for p in points)
    qat = next(p for p in points if p["config"]["recovery"] == "qat")
    assert qat["finetune_loss"] is not None and qat["config"]["finetune_steps"] == 5


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": True}, "epochs True must be a whole number"),  # lax pydantic would read True as 1
    ({"epochs": "6"}, "epochs '6' must be a whole number"),
    ({"epochs": 1.5}, "epochs 1.5 must be a whole number"),
    ({"batch_size": 0}, "batch size 0 must be a whole number of at least 1"),
    ({"lr": "x"}, "lr 'x' is not a number"),
    ({"lr": float("nan")}, "lr nan must be a finite number"),
    ({"weight_decay": -1}, "weight decay -1.0 must be 0 or more"),
    ({"qat_bits": True}, "QAT bits True not supported"),
    ({"qat_bits": "8"}, "QAT bits '8' not supported"),
    ({"target_ratio": True}, "target ratio 1.0 is outside"),
    ({"zz": 1}, "AdaptiveSettings has no setting 'zz'"),
])
def test_adaptive_edge_values_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message) as caught:
        AdaptiveSettings(**kwargs)
    assert "\n" not in str(caught.value)


def test_adaptive_edge_values_accepted_as_before():
    import dataclasses

    made = AdaptiveSettings(epochs=6.0, threads=2.0, qat_bits=8.0, lr="0.01", weight_decay=False, tolerance="0.02",
                            lr_policy="one_cycle", target_ratio="0.5")
    assert (made.epochs, made.threads, made.qat_bits, made.lr, made.weight_decay, made.tolerance) == \
        (6, 2, 8, 0.01, 0.0, 0.02)
    assert type(made.epochs) is int and made.lr_policy == "one-cycle" and made.target_ratio == 0.5
    assert made == AdaptiveSettings.from_dict(made.to_dict()) and hash(made) == hash(AdaptiveSettings.from_dict(made.to_dict()))
    with pytest.raises(ConfigError, match="epochs 0 must be at least 1"):
        dataclasses.replace(made, epochs=0)
    assert dataclasses.replace(made, end_epoch=4).end_epoch == 4


def test_a_prune_schedule_counts_whole_epochs():
    assert PruneSchedule(final="0.5").final == 0.5 and PruneSchedule(start=1.0, end=3).start == 1
    for start in ("3", True, 2.5):
        with pytest.raises(ConfigError, match="must be a whole number"):
            PruneSchedule(start=start)
    with pytest.raises(ConfigError, match="before it starts"):
        PruneSchedule(start=3, end=2)
