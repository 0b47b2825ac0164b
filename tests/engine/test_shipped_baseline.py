"""The digits baseline ships with the product: a fresh home measures its first point without training, only after
the shipped files pass the reader's checks (checksum, listed files, no links), the recipe equals the one asked for,
the weights fit the model and reach the recipe's test accuracy; retraining from the recipe gives the same model."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from gemini_core.checkpoint import shipped
from gemini_core.errors import CheckpointError
from gemini_core.scenarios import get_scenario
from gemini_core.training import baseline as baseline_module
from gemini_core.workflows.baselines import load_or_train


@pytest.fixture()
def fresh_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("GEMINI_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def digits_scenario():
    return get_scenario("digits")


def _key(scenario):
    return baseline_module.baseline_key(scenario, scenario.default_train, "cpu")


def _copy(tmp_path, scenario):
    source = shipped.shipped_folder(_key(scenario))
    assert source is not None, "the digits baseline is not shipped"
    root = tmp_path / "shipped"
    shutil.copytree(source, root / source.name)
    return root, root / source.name


def test_a_fresh_home_uses_the_shipped_digits_baseline_without_training(fresh_home, digits_scenario):
    events = []
    got = load_or_train(digits_scenario, progress=events.append, device="cpu")
    kinds = [e.kind for e in events]
    assert "step" not in kinds and "shipped" in kinds, kinds
    assert got.origin == "shipped" and got.describe()["origin"] == "shipped"
    assert got.test_accuracy > 0.97 and len(got.test_correct) == len(digits_scenario.splits.test)
    # installed into the home's cache: the next use loads it from there, still known as shipped
    again = load_or_train(digits_scenario, device="cpu")
    assert again.cached and again.origin == "shipped"
    assert all(torch.equal(a, b) for a, b in zip(got.model.state_dict().values(), again.model.state_dict().values()))


@pytest.mark.parametrize("damage, message", [
    ("weights", "checksum mismatch"),
    ("recipe_settings", "recipe differs in train_settings"),
    ("accuracy", "classify"),
    ("extra_file", "does not list"),
    ("link", "symbolic link"),
])
def test_a_damaged_shipped_baseline_is_refused(tmp_path, digits_scenario, damage, message):
    _, folder = _copy(tmp_path, digits_scenario)
    recipe_path = folder / shipped.RECIPE_FILE
    recipe = json.loads(recipe_path.read_text())
    if damage == "weights":
        blob = bytearray((folder / shipped.WEIGHTS_FILE).read_bytes())
        blob[-5] ^= 0x40  # one bit of one weight: same size, another checksum
        (folder / shipped.WEIGHTS_FILE).write_bytes(bytes(blob))
    elif damage == "recipe_settings":
        recipe["train_settings"]["lr"] = 0.1
    elif damage == "accuracy":
        recipe["test_accuracy"] = 0.5
    elif damage == "extra_file":
        (folder / "notes.pkl").write_bytes(b"\x80\x04")
    elif damage == "link":
        os.symlink("/etc/passwd", folder / "passwd")
    recipe_path.write_text(json.dumps(recipe))
    model = digits_scenario.build_model()
    with pytest.raises(CheckpointError, match=message):
        shipped.load_shipped(folder, digits_scenario, digits_scenario.default_train, _key(digits_scenario), model)


def test_a_refused_shipped_baseline_is_trained_instead_and_says_why(tmp_path, fresh_home, monkeypatch,
                                                                    digits_scenario):
    root, folder = _copy(tmp_path, digits_scenario)
    blob = bytearray((folder / shipped.WEIGHTS_FILE).read_bytes())
    blob[-5] ^= 0x40
    (folder / shipped.WEIGHTS_FILE).write_bytes(bytes(blob))
    monkeypatch.setattr(shipped, "SHIPPED_DIR", root)
    events = []
    got = load_or_train(digits_scenario, progress=events.append, device="cpu")
    refused = [e for e in events if e.kind == "message" and "shipped_refused" in e.fields]
    assert refused and "checksum mismatch" in refused[0].fields["shipped_refused"]
    assert got.origin == "trained" and any(e.kind == "step" for e in events)
    # trained from a freshly built model, not from the weights the refused file half-loaded
    assert got.test_accuracy > 0.9


def test_a_recipe_for_other_settings_is_not_shipped(fresh_home, digits_scenario):
    settings = type(digits_scenario.default_train)(**{**digits_scenario.default_train.to_dict(), "seed": 1,
                                                       "max_steps": 3})
    events = []
    got = load_or_train(digits_scenario, settings, progress=events.append, device="cpu")
    assert got.origin == "trained" and any(e.kind == "step" for e in events)


def test_retraining_from_the_recipe_reproduces_the_shipped_baseline():
    """Within noise on any CPU (the test split is 360 examples: one example is 0.28 points); bit for bit where the
    CPU's kernels round as the shipping machine's did."""
    result = shipped.retrain_and_compare("digits")
    assert abs(result["shipped_test_accuracy"] - result["retrained_test_accuracy"]) <= 0.01, result
    assert result["test_correctness_agreement"] >= 0.98, result
    assert result["retrained"].origin == "trained"


def test_the_caption_promises_the_shipped_baseline_only_on_the_cpu_it_was_trained_on():
    """On a GPU the baseline's key names the accelerator, so the CPU-trained one is not used and it trains: the
    demo's caption and estimate must not say it ships."""
    import torch

    assert shipped.ships_default("digits", device=torch.device("cpu"))
    assert not shipped.ships_default("digits", device=torch.device("cuda"))
