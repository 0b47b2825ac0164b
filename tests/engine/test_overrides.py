"""Per-layer overrides: validated, hit exactly the named layers, keep coupled groups consistent, round-trip."""
from __future__ import annotations

import json

import pytest
import torch

from gemini_core.compress import compress
from gemini_core.compress.codec import LAYER_BITS_KEY, from_bytes
from gemini_core.config import CompressionConfig, LayerOverride
from gemini_core.errors import ConfigError
from gemini_core.measure import classification_metrics
from tests.engine.test_export import _round_trip


@pytest.mark.parametrize("overrides, message", [
    ([{"pattern": "features.0", "bitz": 8}], "unknown field"),
    ([{"pattern": "features.0", "bits": 5}], "'features.0': bits 5 not supported"),
    ([{"pattern": "features.0", "prune_ratio": 0.97}], r"'features.0': prune ratio 0.97 is outside"),
    ([{"pattern": "features.0", "granularity": "group-7"}], "unknown granularity"),
    ([{"pattern": "features.0"}], "sets nothing"),
    ([{"pattern": "", "bits": 8}], "non-empty"),
    ([{"pattern": "features.[0", "bits": 8}], "closing"),
    ([{"pattern": "features.0", "skip": True, "bits": 8}], "cannot also set"),
    (["features.0"], "must be a mapping"),
])
def test_bad_overrides_raise_config_error_naming_the_entry(overrides, message):
    with pytest.raises(ConfigError, match=message):
        CompressionConfig(bits=8, layer_overrides=overrides)


def test_ratio_override_needs_a_prune_method():
    with pytest.raises(ConfigError, match="prune method is 'none'"):
        CompressionConfig(layer_overrides=[{"pattern": "features.0", "prune_ratio": 0.5}])


def test_overrides_are_hashable_serialisable_and_keep_old_keys():
    plain = CompressionConfig(bits=8)
    assert plain.to_dict()["layer_overrides"] == []
    assert plain.key() == "8080a19e938920c0"  # the key this config had before overrides existed
    mixed = CompressionConfig(bits=8, layer_overrides=[("classifier.*", {"bits": 32}), {"pattern": "features.0", "skip": True}])
    assert all(isinstance(o, LayerOverride) for o in mixed.layer_overrides)
    assert CompressionConfig.from_dict(json.loads(json.dumps(mixed.to_dict()))) == mixed
    assert len({mixed, CompressionConfig.from_dict(mixed.to_dict())}) == 1
    assert mixed.key() != plain.key() and "per-layer" in mixed.label() and "classifier.*=32b" in mixed.label()


def test_a_pattern_naming_no_layer_is_an_error_naming_it(digits):
    scenario, baseline = digits
    config = CompressionConfig(bits=8, layer_overrides=[{"pattern": "encoder.*.output.dense", "bits": 32}])
    with pytest.raises(ConfigError, match=r"'encoder.\*.output.dense' matches no layer"):
        compress(baseline.model, config, scenario)


def test_bit_overrides_hit_exactly_the_named_layers(digits):
    scenario, baseline = digits
    uniform = compress(baseline.model, CompressionConfig(bits=4, granularity="per-channel"), scenario)
    mixed = compress(baseline.model, CompressionConfig(bits=4, granularity="per-channel", layer_overrides=[
        {"pattern": "features.3", "bits": 32}, {"pattern": "classifier.1", "bits": 8}]), scenario)
    original = dict(baseline.model.state_dict())
    for name, tensor in mixed.stored_model.state_dict().items():
        if name == "features.3.weight":  # kept float: bit-exact with the baseline
            assert torch.equal(tensor, original[name])
        elif name != "classifier.1.weight":  # untouched by the overrides: bit-exact with uniform 4-bit
            assert torch.equal(tensor, uniform.stored_model.state_dict()[name]), name
    assert mixed.quantized["classifier.1.weight"].bits == 8 and mixed.quantized["features.0.weight"].bits == 4
    assert "features.3.weight" not in mixed.quantized
    assert mixed.layer_backends["classifier.1"] == "int8-dynamic"
    assert mixed.layer_backends["features.3"] == "dense-fp32"
    assert mixed.layer_bits() == {"features.0": 4, "features.3": 32, "features.7": 4, "classifier.1": 8,
                                  "classifier.3": 4}


def test_an_fp32_layer_stays_float_when_the_others_run_int8(digits):
    scenario, baseline = digits
    mixed = compress(baseline.model, CompressionConfig(bits=8, layer_overrides=[{"pattern": "classifier.3", "bits": 32}]),
                     scenario)
    assert mixed.layer_backends["classifier.1"] == "int8-dynamic"
    assert mixed.layer_backends["classifier.3"] == "dense-fp32"
    assert isinstance(mixed.model.classifier[3], torch.nn.Linear)
    assert classification_metrics(mixed.model, scenario.splits.test, "cpu")["accuracy"] >= 0.95


def test_structured_ratio_override_prunes_the_coupled_group_only(digits):
    scenario, baseline = digits
    config = CompressionConfig(prune_method="l2-structured", layer_overrides=[{"pattern": "features.3", "prune_ratio": 0.5}])
    compressed = compress(baseline.model, config, scenario)
    shapes = {k: tuple(v.shape) for k, v in compressed.stored_model.state_dict().items()}
    before = {k: tuple(v.shape) for k, v in baseline.model.state_dict().items()}
    assert shapes["features.3.weight"] == (32, 32, 3, 3)  # out channels halved
    assert shapes["features.4.weight"] == (32,)  # its BatchNorm with it
    assert shapes["features.7.weight"] == (64, 32, 3, 3)  # the next conv's inputs with it
    changed = {k for k in before if before[k] != shapes[k]}
    assert all(k.startswith(("features.3.", "features.4.", "features.7.weight")) for k in changed), changed
    out = compressed.model(**scenario.example_inputs(4))
    assert out.shape == (4, 10)


def test_skip_keeps_a_group_whole_while_the_rest_is_pruned(digits):
    scenario, baseline = digits
    config = CompressionConfig(prune_method="l2-structured", prune_ratio=0.5,
                               layer_overrides=[{"pattern": "features.0", "skip": True}])
    compressed = compress(baseline.model, config, scenario)
    state = compressed.stored_model.state_dict()
    assert state["features.0.weight"].shape[0] == 32 and state["features.3.weight"].shape == (32, 32, 3, 3)
    assert torch.equal(state["features.0.weight"], baseline.model.state_dict()["features.0.weight"])


def test_unstructured_per_layer_ratio(digits):
    scenario, baseline = digits
    config = CompressionConfig(prune_method="magnitude-unstructured", prune_ratio=0.5,
                               layer_overrides=[{"pattern": "classifier.1", "prune_ratio": 0.9},
                                                {"pattern": "features.3", "skip": True}])
    state = compress(baseline.model, config, scenario).stored_model.state_dict()
    zeros = {k: float((v == 0).float().mean()) for k, v in state.items() if k.endswith("weight") and v.dim() > 1}
    assert zeros["classifier.1.weight"] == pytest.approx(0.9, abs=0.01)
    assert zeros["features.7.weight"] == pytest.approx(0.5, abs=0.01)
    assert zeros["features.3.weight"] < 0.01


@pytest.mark.parametrize("config", [
    CompressionConfig(bits=4, granularity="group-32", layer_overrides=[
        {"pattern": "classifier.*", "bits": 8, "granularity": "per-channel"}, {"pattern": "features.0", "bits": 32}]),
    CompressionConfig(bits=16, layer_overrides=[{"pattern": "features.3", "bits": 2, "granularity": "group-32"},
                                                {"pattern": "classifier.3", "bits": 32}]),
    CompressionConfig(prune_method="l1-structured", bits=8, layer_overrides=[
        {"pattern": "features.7", "prune_ratio": 0.5}, {"pattern": "classifier.1", "bits": 16}]),
], ids=["int4+int8+fp32", "bf16+int2+fp32", "pruned-group+int8+bf16"])
def test_export_reload_carries_per_layer_settings(digits, tmp_path, config):
    scenario, baseline = digits
    compressed, loaded, path, recipe = _round_trip(scenario, baseline, config, tmp_path / "export")
    assert recipe["config"]["layer_overrides"] == [o.to_dict() for o in config.layer_overrides]
    assert recipe["layer_bits"] == compressed.layer_bits()
    _, _, meta = from_bytes((path / "model.safetensors").read_bytes())
    assert json.loads(meta[LAYER_BITS_KEY]) == compressed.layer_bits()
    assert {k: q.bits for k, q in loaded.quantized.items()} == {k: q.bits for k, q in compressed.quantized.items()}
    assert loaded.layer_backends == compressed.layer_backends
    assert len(set(recipe["layer_bits"].values())) >= 2


@pytest.mark.parametrize("kwargs, message", [
    ({"bits": True}, "layer override 'fc': bits True not supported"),
    ({"bits": "8"}, "layer override 'fc': bits '8' not supported"),
    ({"skip": 1}, "layer override 'fc': skip must be true or false, not 1"),
    ({"prune_ratio": "x"}, "layer override 'fc': prune ratio 'x' is not a number"),
])
def test_override_edge_values_are_refused_naming_the_entry(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LayerOverride("fc", **kwargs)
    with pytest.raises(ConfigError, match="layer override 5: the pattern must be a non-empty"):
        LayerOverride(5, bits=8)


def test_override_edge_values_accepted_as_before():
    import dataclasses

    assert LayerOverride(" fc ", bits=8.0) == LayerOverride("fc", bits=8)  # stripped, a whole float is the number
    assert LayerOverride("fc", granularity=64).granularity == "group-64"
    with pytest.raises(ConfigError, match="layer override 'fc': bits 5 not supported"):
        dataclasses.replace(LayerOverride("fc", bits=8), bits=5)
