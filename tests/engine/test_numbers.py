"""Numbers you can trust: reproducible baselines, intervals checked by hand, fair control,
noise-aware fronts, measurement conditions."""
from __future__ import annotations

import copy
import hashlib
import math

import numpy as np
import pytest
import torch

from gemini_core.config import CompressionConfig
from gemini_core.device import busy_warning, cpu_flags, device_info
from gemini_core.errors import ConfigError
from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.results.pareto import pareto_front
from gemini_core.results.stats import (
    NO_CHANGE,
    describe_delta,
    mcnemar_exact_p,
    paired_difference,
    wilson_interval,
)
from gemini_core.results.store import Store
from gemini_core.results.table import points_frame
from gemini_core.scenarios import get_scenario
from gemini_core.scenarios.base import TrainSettings
from gemini_core.training.baseline import baseline_key, get_baseline
from gemini_core.training.loop import predict, trim_padding
from gemini_core.workflows.sweep import run_sweep

FAST = {"min_runs": 3, "min_seconds": 0.0}
QUICK = TrainSettings(epochs=3, batch_size=64, lr=3e-3, patience=0)


# -- intervals against hand computations ------------------------------------------------------------
def test_wilson_interval_matches_the_hand_computation():
    # 45 right of 50, z = 1.96: p = 0.9, z^2/n = 0.076832, centre = (0.9 + 0.038416) / 1.076832 = 0.871466,
    # half = 1.96 / 1.076832 * sqrt(0.9 * 0.1 / 50 + 3.8416 / 10000) = 0.085063
    low, high = wilson_interval(45, 50)
    assert low == pytest.approx(0.871466 - 0.085063, abs=2e-5)
    assert high == pytest.approx(0.871466 + 0.085063, abs=2e-5)
    # 270 of 270: the interval is not [1, 1]; lower bound n / (n + z^2) = 270 / 273.8415
    low, high = wilson_interval(270, 270)
    assert high == 1.0 and low == pytest.approx(270 / (270 + 1.959964 ** 2), abs=1e-6)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_mcnemar_exact_matches_the_binomial_by_hand():
    # 1 vs 6 discordant pairs: 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128
    assert mcnemar_exact_p(1, 6) == pytest.approx(0.125)
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(3, 3) == 1.0


def test_paired_bootstrap_matches_the_normal_hand_computation_and_repeats():
    n = 2000
    base = np.ones(n, dtype=int)
    point = base.copy()
    point[:60] = 0  # the point loses 60 examples ...
    base[100:120] = 0  # ... and is right on 20 the baseline misses
    point[100:120] = 1
    paired = paired_difference(point, base)
    d = (20 - 60) / n  # mean difference
    se = math.sqrt((80 / n - d * d) / n)  # diff in {-1, 0, 1}: E[d^2] = 80 / n
    assert paired["accuracy_delta"] == pytest.approx(d)
    low, high = paired["accuracy_delta_ci95"]
    assert low == pytest.approx(d - 1.96 * se, abs=0.004) and high == pytest.approx(d + 1.96 * se, abs=0.004)
    assert paired["measurable"] and paired["baseline_only_right"] == 60 and paired["point_only_right"] == 20
    assert paired_difference(point, base) == paired  # seeded: the same interval every time
    same = paired_difference(base, base)
    assert same["accuracy_delta_ci95"] == [0.0, 0.0] and not same["measurable"]
    assert describe_delta(0.004, [-0.01, 0.018]).startswith(NO_CHANGE)
    assert not describe_delta(-0.02, [-0.03, -0.01]).startswith(NO_CHANGE)


def test_front_never_calls_a_point_better_within_noise():
    n = 300
    fast = {"accuracy": 0.95, "accuracy_ci95": list(wilson_interval(285, n)), "latency_ms_p50": 1.0}
    slow = {"accuracy": 0.96, "accuracy_ci95": list(wilson_interval(288, n)), "latency_ms_p50": 2.0}
    objectives = {"accuracy": "max", "latency_ms_p50": "min"}
    # Within noise the accuracies tie, so the faster point dominates the "more accurate" slow one.
    assert pareto_front([fast, slow], objectives) == [True, False]
    assert pareto_front([fast, slow], objectives, noise=False) == [True, True]
    # Paired per-example correctness decides when present: 30 more examples right is measurable.
    bits_fast = "1" * 250 + "0" * 50
    bits_slow = "1" * 280 + "0" * 20
    fast2 = {**fast, "accuracy": 250 / n, "test_correct": bits_fast}
    slow2 = {**slow, "accuracy": 280 / n, "test_correct": bits_slow}
    assert pareto_front([fast2, slow2], objectives) == [True, True]


# -- reproducibility ----------------------------------------------------------------------------------
def _weights_hash(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_baseline_and_points_repeat_across_homes_and_thread_counts(tmp_path, monkeypatch):
    """Two fresh homes, the caller at 1 then 2 threads: the same weights, test accuracy and point accuracies."""
    spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.5,), bits=(32, 8), finetune_steps=(15,),
                     batch_size=8)
    results = []
    previous = torch.get_num_threads()
    try:
        for threads, home in ((1, tmp_path / "home1"), (2, tmp_path / "home2")):
            monkeypatch.setenv("GEMINI_HOME", str(home))
            torch.set_num_threads(threads)
            torch.manual_seed(1234 + threads)  # whatever ran before must not matter
            scenario = get_scenario("digits")
            baseline = get_baseline(scenario, QUICK)
            assert not baseline.cached
            assert torch.get_num_threads() == threads  # training's thread count was restored
            points = list(run_sweep(scenario, spec, Store(home / "runs.sqlite"), device="cpu",
                                    latency_kwargs=FAST, baseline=baseline))
            accuracies = {p["label"]: (p["accuracy"], p["test_correct"]) for p in points}
            results.append((_weights_hash(baseline.model), baseline.test_accuracy, accuracies, points))
    finally:
        torch.set_num_threads(previous)
    (hash1, acc1, points1, records), (hash2, acc2, points2, _) = results
    assert hash1 == hash2 and acc1 == acc2
    assert points1 == points2
    labels = set(points1)
    assert "control: unpruned ft15 / 32-bit / dense" in labels  # the fair control is in the sweep
    for record in records:
        assert record["test_n"] == 270 and len(record["test_correct"]) == 270
        low, high = record["accuracy_ci95"]
        assert low <= record["accuracy"] <= high
        assert record["latency_ms_p10"] <= record["latency_ms_p50"] <= record["latency_ms_p90"]
        assert {"load_avg_1m", "cores", "cpu", "cpu_flags", "threads"} <= set(record)
        assert "accuracy_delta_ci95" in record  # paired against the baseline
    df = points_frame(records)
    assert df["is_control"].sum() == 1 and df["is_reference"].sum() == 1
    assert df["change_vs_control"].notna().all()


def test_adaptive_training_repeats_at_1_and_2_threads():
    """Adaptive training runs under the same wrapper as the baseline: the caller at 1 then 2 threads, other
    random draws before, gives the same weights; the caller's thread count and random state are untouched."""
    from gemini_core.adaptive import AdaptiveSettings, train_adaptive

    scenario = get_scenario("digits")
    settings = AdaptiveSettings(epochs=2, target_ratio=0.5, end_epoch=1, max_steps=30, lr_policy="one-cycle")
    results = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(99 + threads)  # whatever ran before must not matter
            state = torch.get_rng_state()
            result = train_adaptive(scenario, settings, device="cpu", cache=False)
            assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), state)
            assert result.summary["params_after"] < result.summary["params_before"]  # it pruned while training
            results.append((_weights_hash(result.model), result.test_accuracy))
    finally:
        torch.set_num_threads(previous)
    assert results[0] == results[1]


def test_recovery_does_not_hurt_an_unpruned_baseline(digits):
    """Issue 15: 20 recovery steps at a constant 0.3x rate cost the unpruned digits model 2.6 points
    [-4.4, -0.7]. With warm-up and decay (the training's one-cycle schedule) the fair control keeps its
    accuracy: the paired interval of its change reaches 0 or above."""
    import copy

    from gemini_core.techniques.prune import prune

    scenario, baseline = digits
    control = prune(copy.deepcopy(baseline.model), CompressionConfig(finetune_steps=20), scenario).model
    correct = (predict(control, scenario.splits.test) == scenario.splits.test.labels).int().tolist()
    change = paired_difference(correct, baseline.test_correct)
    assert change["accuracy_delta_ci95"][1] >= 0, change


def test_a_fine_tuned_point_key_holds_the_recovery_recipe(monkeypatch):
    """Points stored under another recovery recipe are not taken for this one's (a store keeps old runs)."""
    from gemini_core.kinds.classifier import units

    tuned, plain = CompressionConfig(finetune_steps=20), CompressionConfig()
    before = units.point_key(tuned, 32, "cpu"), units.point_key(plain, 32, "cpu")
    monkeypatch.setattr(units, "RECOVERY_RECIPE", "another-recipe")
    assert units.point_key(tuned, 32, "cpu") != before[0]
    assert units.point_key(plain, 32, "cpu") == before[1]  # nothing recovered: nothing to change


def test_the_key_holds_the_training_thread_count_and_patience():
    scenario = get_scenario("digits")
    base = baseline_key(scenario, QUICK)
    assert baseline_key(scenario, TrainSettings(**{**QUICK.to_dict(), "threads": 2})) != base
    assert baseline_key(scenario, TrainSettings(**{**QUICK.to_dict(), "patience": 3})) != base


def test_the_key_names_an_accelerator_but_cpu_keys_stay_as_they_were():
    scenario = get_scenario("digits")
    cpu = baseline_key(scenario, QUICK)
    assert baseline_key(scenario, QUICK, "cpu") == cpu
    assert baseline_key(scenario, QUICK, "meta") != cpu   # any non-CPU device trains other weights


def test_early_stopping_restores_the_best_epoch_and_says_which(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_HOME", str(tmp_path))
    scenario = get_scenario("digits")
    baseline = get_baseline(scenario, TrainSettings(epochs=30, batch_size=64, lr=3e-3, patience=2))
    chosen = baseline.history[-1]
    epochs = [h for h in baseline.history if h.get("event") == "epoch"]
    assert chosen["event"] == "chosen" and chosen["epochs_run"] == len(epochs)
    assert chosen["val_accuracy"] == max(e["val_accuracy"] for e in epochs)
    assert baseline.describe()["chosen_epoch"]["epoch"] == chosen["epoch"]
    if len(epochs) < 30:  # stopped early: the last `patience` epochs were no better
        assert "early stopping" in chosen["stopped"]
        assert all(e["val_accuracy"] <= chosen["val_accuracy"] for e in epochs[-2:])


def test_dynamic_padding_cuts_to_the_longest_example_only():
    inputs = {"input_ids": torch.tensor([[5, 6, 0, 0, 0], [7, 0, 0, 0, 0]]),
              "attention_mask": torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])}
    trimmed = trim_padding(inputs)
    assert trimmed["input_ids"].tolist() == [[5, 6], [7, 0]] and trimmed["attention_mask"].shape == (2, 2)
    images = {"x": torch.zeros(2, 1, 8, 8)}
    assert trim_padding(images) is images


# -- measurement conditions --------------------------------------------------------------------------
def test_device_info_names_the_conditions_and_warns_on_a_busy_machine():
    info = device_info("cpu")
    assert {"cores", "load_avg_1m", "cpu", "cpu_flags", "threads"} <= set(info)
    assert isinstance(cpu_flags(), tuple)
    assert busy_warning({"load_avg_1m": 5.0, "cores": 2}).startswith("measured on a busy machine")
    assert busy_warning({"load_avg_1m": 1.0, "cores": 2}) is None


def test_control_config_is_its_own_model():
    control = CompressionConfig(finetune_steps=30)
    assert control.prune_key != CompressionConfig().prune_key
    assert control.label().startswith("control")
    assert SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.5,), finetune_steps=(10, 30)).control() == control
    assert SweepSpec(prune_methods=("none",)).control() is None


def test_points_table_and_retime_from_the_cli(digits, capsys):
    from gemini_core import cli
    from gemini_core.results.units import size_text

    scenario, baseline = digits
    spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.5,), bits=(32,), finetune_steps=(10,),
                     batch_size=8)
    records = list(run_sweep(scenario, spec, Store(), device="cpu", latency_kwargs=FAST, baseline=baseline))
    run_id = records[0]["run_id"]
    capsys.readouterr()
    assert cli.main(["points", run_id, "--table"]) == 0
    table = capsys.readouterr().out
    assert "change_vs_control" in table and "points [" in table and "(n=270)" in table
    # sizes read as the dashboard shows them (one formatter), not as raw byte counts
    size = size_text(records[0]["size_bytes"])
    assert size in table and f"{records[0]['size_bytes']}" not in table, table
    assert cli.main(["retime", run_id, "--rounds", "2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == len(records)
    retimed = Store().points(run_id)
    for point in retimed:
        assert point["retime_rounds"] == 2 and point["latency_runs"] >= 10  # 2 rounds x at least 5 runs
        assert "previous_latency" in point and point["accuracy"] == next(
            r["accuracy"] for r in records if r["point_key"] == point["point_key"])
    assert cli.main(["retime", "nosuchrun"]) == 2


def test_tabular_takes_a_held_out_test_file_with_the_same_checks(tmp_path):
    from gemini_core.errors import DataError

    rng = np.random.default_rng(0)

    def table(rows, path, drop=None, extra_label=False):
        x = rng.normal(size=(rows, 3))
        y = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no").astype(object)
        if extra_label:
            y[0] = "maybe"
        lines = ["a,b,c,label"] + [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{lab}" for r, lab in zip(x, y)]
        if drop:
            lines = [",".join(v for i, v in enumerate(line.split(",")) if i != drop) for line in lines]
        path.write_text("\n".join(lines) + "\n")
        return path

    train = table(200, tmp_path / "train.csv")
    test = table(60, tmp_path / "test.csv")
    scenario = get_scenario("tabular", data=str(train), label_column="label", test_data=str(test))
    splits = scenario.splits
    assert len(splits.test) == 60 and len(splits.train) + len(splits.val) == 200
    assert scenario.describe()["test_file"] == str(test)
    with pytest.raises(DataError, match="lacks feature column"):
        get_scenario("tabular", data=str(train), label_column="label",
                     test_data=str(table(30, tmp_path / "short.csv", drop=2))).splits
    with pytest.raises(DataError, match="labels the training file does not"):
        get_scenario("tabular", data=str(train), label_column="label",
                     test_data=str(table(30, tmp_path / "odd.csv", extra_label=True))).splits


def test_images_take_a_held_out_npz_resized_to_the_training_size(tmp_path):
    from gemini_core.errors import DataError

    rng = np.random.default_rng(0)

    def npz(path, n, size, channels=1, labels=("a", "b")):
        x = rng.random((n, size, size, channels)).astype(np.float32) if channels > 1 else \
            rng.random((n, size, size)).astype(np.float32)
        np.savez(path, x=x, y=np.array([labels[i % len(labels)] for i in range(n)]))
        return path

    train = npz(tmp_path / "train.npz", 80, 8)
    test = npz(tmp_path / "test.npz", 20, 16)  # another size: resized to the training images'
    scenario = get_scenario("images", data=str(train), test_data=str(test))
    assert len(scenario.splits.test) == 20 and tuple(scenario.splits.test.inputs["x"].shape[1:]) == (1, 8, 8)
    assert len(scenario.splits.train) + len(scenario.splits.val) == 80
    with pytest.raises(DataError, match="labels the training file does not"):
        get_scenario("images", data=str(train), test_data=str(npz(tmp_path / "odd.npz", 20, 8, labels=("a", "z")))).splits
    with pytest.raises(DataError, match="channel"):
        get_scenario("images", data=str(train), test_data=str(npz(tmp_path / "rgb.npz", 20, 8, channels=3))).splits
    with pytest.raises(DataError, match="does not exist"):
        get_scenario("images", data=str(train), test_data=str(tmp_path / "missing.npz"))


def test_digit_scans_written_as_png_folders_load_as_a_users_images(tmp_path):
    """bench.experiments.digits_pngs: scikit-learn's real 8x8 scans as 28x28 PNGs in class folders (the README's
    stand-in for a user's digit images; not MNIST) load through the images scenario as written."""
    from PIL import Image

    from bench.experiments.digits_pngs import write_digit_pngs

    assert write_digit_pngs(tmp_path, 28) == 1797
    assert sorted(p.name for p in tmp_path.iterdir()) == [str(d) for d in range(10)]
    first = next((tmp_path / "0").iterdir())
    with Image.open(first) as image:
        assert image.size == (28, 28) and image.mode == "L"
    splits = get_scenario("images", data=str(tmp_path)).splits
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    assert tuple(splits.train.inputs["x"].shape[1:]) == (1, 28, 28) and splits.class_names == [str(d) for d in range(10)]


def test_each_scenario_names_its_recovery_schedule_and_the_point_key_holds_it(digits):
    """Recovery follows the scenario's schedule: one-cycle for models trained from scratch (digits keys as
    they were), a constant rate for the pre-trained text encoder; another schedule is another point."""
    from gemini_core.kinds.classifier import units
    from gemini_core.scenarios.text import TextScenario
    from gemini_core.training.loop import recovery_recipe, train_steps

    scenario, baseline = digits
    assert scenario.recovery_schedule == "one-cycle" and TextScenario.recovery_schedule == "constant"
    tuned = CompressionConfig(finetune_steps=20)
    assert recovery_recipe("one-cycle") == units.RECOVERY_RECIPE
    assert units.point_key(tuned, 32, "cpu", recovery_recipe("constant")) != units.point_key(tuned, 32, "cpu")
    recovered = {}
    for schedule in ("one-cycle", "constant"):
        model = copy.deepcopy(baseline.model)
        train_steps(model, scenario.splits.train, 6, lr=1e-3, batch_size=32, schedule=schedule)
        recovered[schedule] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.equal(recovered["one-cycle"], recovered["constant"])  # the schedule reached the optimizer
    with pytest.raises(ConfigError, match="recovery schedule 'cosine'"):
        train_steps(copy.deepcopy(baseline.model), scenario.splits.train, 2, lr=1e-3, schedule="cosine")
