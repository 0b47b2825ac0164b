"""The ids made from settings stay what they were: stored points are found by config keys and point keys, runs by
run ids and analyses by their parameters' dicts, all hashed from ``to_dict()``. A change to how settings are
declared or checked must leave every one of these strings as it is (the values are what the hand-checked
dataclasses gave)."""
from __future__ import annotations

import hashlib
import json

import pytest

from gemini_core.adaptive.settings import AdaptiveSettings
from gemini_core.config import CompressionConfig
from gemini_core.kinds.classifier.engine import run_id_for
from gemini_core.kinds.classifier.sensitivity import AnalysisParams
from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.kinds.classifier.units import point_key
from gemini_core.kinds.llm.point import LLMPointConfig, LLMSettings
from gemini_core.kinds.llm.sensitivity import LLMSensitivityParams
from gemini_core.kinds.llm.sweep import LLMSweepSpec, llm_point_key
from gemini_core.techniques.grid import QuantGrid


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


OVERRIDES = [("classifier.*", {"bits": 32}), {"pattern": "features.0", "skip": True}]


@pytest.mark.parametrize("config, key, point, ray_point", [
    (CompressionConfig(), "f25e687ca0def572", "27dd108614d75906", "d92d36c8737f8625"),
    (CompressionConfig(bits=8), "8080a19e938920c0", "5f49f0eac0dce5ed", "43deb700533f7494"),
    (CompressionConfig(prune_method="l2-structured", prune_ratio=0.5, finetune_steps=10, bits=4, granularity="64",
                       execution="sparse"), "7b1c68bb916a0501", "cc86df52282430b3", "22dfaafc497e2a10"),
    (CompressionConfig(prune_method="l1-structured", prune_ratio=0.5, finetune_steps=20, bits=4, recovery="qat"),
     "1a37bbbc29ba6d6f", "8f3a417a27f74f88", "771c5838c1ef5646"),
    (CompressionConfig(bits=8, layer_overrides=OVERRIDES), "8ffa87bf194bbfe9", "6be1216ca1b341d4", "b589cbdce441f77b"),
    (CompressionConfig(prune_method="2:4", finetune_steps=5, recovery="distill"),
     "2b93fab2ee9b06db", "bb58c3a4b853d28b", "c30b6ddca3b44259"),
])
def test_classifier_config_and_point_keys_are_unchanged(config, key, point, ray_point):
    assert config.key() == key
    assert point_key(config, 32, "cpu") == point
    assert point_key(config, 8, "ray:cpu", "recipe-x") == ray_point


@pytest.mark.parametrize("spec, run_id, digest", [
    (SweepSpec(), "f5037cd70e27", "0b01a865b54cd0f3"),
    (SweepSpec(prune_methods=("none", "l1-structured"), prune_ratios=(0.0, 0.5), bits=(32, 8, 4),
               granularities=("per-channel", "g32"), finetune_steps=(0, 20), recoveries=("finetune", "qat"),
               batch_size=16), "ca27796131ba", "d5dbc48d1e5da40b"),
    (SweepSpec(allocations=(CompressionConfig(bits=8, layer_overrides=OVERRIDES),), recover_unpruned=True),
     "632bca38b9ab", "eb7277a2df7ffd9c"),
])
def test_classifier_run_ids_are_unchanged(spec, run_id, digest):
    assert run_id_for("base-1", spec, "cpu") == run_id
    assert _digest(spec.to_dict()) == digest


SETTINGS = [LLMSettings(), LLMSettings(context_len=256, stride=128, recovery_lr=5e-4, temperature=2.0)]


@pytest.mark.parametrize("config, digest, keys", [
    (LLMPointConfig(), "15bba92a19830a83", ["1fb4910ce8c8125d", "16398fe61ad06f2a"]),
    (LLMPointConfig(quant_method="gptq", bits=4, group_size="g64"), "e6a4d27fbd76a2f4",
     ["cf55fcb6815ef393", "4979cb2eeb843653"]),
    (LLMPointConfig(prune_method="wanda", pattern="2:4", recovery="distill", recovery_steps=5), "9e9c83317d762c6e",
     ["1df7cdba29a635b3", "30d650dd785e5f34"]),
    (LLMPointConfig(mlp_ratio=0.25), "ec282b461fde14ab", ["548105329e2520a0", "96f1b9eea38cf742"]),
])
def test_llm_point_keys_are_unchanged(config, digest, keys):
    assert _digest(config.to_dict()) == digest
    # executor "ray": the key holds no thread count, so it is the same on every machine
    assert [llm_point_key(config, settings, "ray") for settings in SETTINGS] == keys


def test_llm_sweep_specs_and_the_other_parameters_hash_as_before():
    assert _digest(LLMSweepSpec().to_dict()) == "ed1dd71294f1e315"
    spec = LLMSweepSpec.from_strings(quant_methods="rtn,gptq", bits="8,4", group_sizes="per-channel,64",
                                     prune_methods="magnitude", sparsities="0.5,2:4", recoveries="distill",
                                     recovery_steps="5", settings=SETTINGS[1])
    assert _digest(spec.to_dict()) == "25db1b7e15e325c3" and len(spec.points()) == 13
    assert _digest(AnalysisParams().to_dict()) == "7ea2a7dae72a965c"
    assert _digest(AnalysisParams(ratios=(0.5, 0.25, 0.5), bits=(4, 8), granularity="g32",
                                  phases=("quantization",)).to_dict()) == "9c03e22dbbb91c82"
    assert _digest(LLMSensitivityParams().to_dict()) == "4e572a6a1feba49d"
    assert _digest(LLMSensitivityParams(bits=(3, 4, 4), group_size="per-channel", keep=2).to_dict()) == \
        "a3d57eceff8c5909"
    assert _digest(AdaptiveSettings().to_dict()) == "f2dc4e335814783d"
    assert _digest(AdaptiveSettings(epochs=6, lr=0.01, target_ratio=0.5, tolerance=0.02, qat_bits=4,
                                    lr_policy="one_cycle").to_dict()) == "777ed49ad15a2177"
    assert [_digest(g.to_dict()) for g in (QuantGrid(4), QuantGrid(4, "g64", symmetric=False), QuantGrid(32))] == \
        ["8673b102ec7a4dc9", "328e42a854903503", "80d090b0bbd9e6ef"]
