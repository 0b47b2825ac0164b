import pytest

from gemini_core.config import CompressionConfig, parse_list
from gemini_core.errors import ConfigError
from gemini_core.kinds.classifier.spec import SweepSpec


@pytest.mark.parametrize("kwargs, message", [
    ({"prune_method": "l1-structured", "prune_ratio": 1.2}, "outside [0, 0.95]"),
    ({"prune_method": "l1-structured", "prune_ratio": -0.1}, "outside [0, 0.95]"),
    ({"bits": 1}, "bits 1 not supported"),
    ({"bits": 5}, "bits 5 not supported"),
    ({"prune_method": "magic"}, "unknown prune method 'magic'"),
    ({"granularity": "group-7"}, "unknown granularity"),
    ({"execution": "fast"}, "unknown execution"),
    ({"finetune_steps": -3}, "must be 0 or more"),
    ({"prune_method": "none", "prune_ratio": 0.5}, "with prune method 'none'"),
])
def test_bad_config_is_refused_with_a_named_reason(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        CompressionConfig(**kwargs)


def test_config_round_trips_through_dict_and_key_is_stable():
    config = CompressionConfig(prune_method="l2-structured", prune_ratio=0.5, finetune_steps=10, bits=4,
                               granularity="group-32", execution="sparse")
    again = CompressionConfig.from_dict(config.to_dict())
    assert again == config and again.key() == config.key()
    assert CompressionConfig(bits=8).key() != CompressionConfig(bits=4).key()


def test_two_four_fixes_its_ratio():
    assert CompressionConfig(prune_method="2:4", prune_ratio=0.3).prune_ratio == 0.5


def test_sweep_grid_expands_without_duplicates():
    spec = SweepSpec(prune_methods=("none", "l1-structured"), prune_ratios=(0.0, 0.5), bits=(32, 16, 4),
                     granularities=("per-channel", "group-32"), executions=("dense", "sparse"))
    configs = spec.configs()
    assert len({c.key() for c in configs}) == len(configs)
    # 2 pruning settings x (32 + 16 + 4 x 2 granularities) x 2 executions
    assert len(configs) == 2 * (1 + 1 + 2) * 2
    assert spec.n_points() == len(configs)  # the fp32 dense reference is already in the grid
    assert len(spec.prune_settings()) == 2


def test_sweep_adds_the_reference_point_when_missing():
    spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.5,), bits=(8,))
    assert spec.n_points() == 2
    assert spec.units()[0].configs[0] == CompressionConfig()


@pytest.mark.parametrize("kwargs, message", [
    ({"bits": ()}, "empty"),
    ({"batch_size": 0}, "batch size 0"),
    ({"prune_ratios": (0.5, 1.5)}, "1.5 is outside"),
    ({"prune_methods": ("none", "bogus")}, "unknown prune method 'bogus'"),
])
def test_bad_sweep_specs_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SweepSpec(**kwargs)


def test_parse_list_names_the_bad_item():
    assert parse_list("32, 8,4", int, "bits") == [32, 8, 4]
    with pytest.raises(ConfigError, match="'x' is not a valid int"):
        parse_list("4,x", int, "bits")
    with pytest.raises(ConfigError, match="empty list"):
        parse_list(" , ", int, "bits")


@pytest.mark.parametrize("kwargs, message", [
    ({"bits": True}, "bits True not supported"),  # lax pydantic would read True as 1
    ({"bits": "8"}, "bits '8' not supported"),  # ... and "8" as 8; the config never did
    ({"bits": None}, "bits None not supported"),
    ({"finetune_steps": True}, "fine-tune steps True must be a whole number"),
    ({"finetune_steps": "5"}, "fine-tune steps '5' must be a whole number"),
    ({"finetune_steps": 5.5}, "fine-tune steps 5.5 must be a whole number"),
    ({"prune_method": "l1-structured", "prune_ratio": float("nan")}, "prune ratio nan is outside"),
    ({"prune_method": 5}, "unknown prune method 5"),
    ({"recovery": None}, "unknown recovery None"),
    ({"layer_overrides": "fc"}, "must be a list of entries"),
    ({"layer_overrides": 5}, "must be a list of entries"),
    ({"bitz": 8}, "CompressionConfig has no setting 'bitz'"),
])
def test_config_edge_values_are_refused_as_before_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message) as caught:
        CompressionConfig(**kwargs)
    assert "\n" not in str(caught.value)


def test_config_edge_values_accepted_as_before():
    import numpy as np

    assert CompressionConfig(bits=8.0) == CompressionConfig(bits=8) and type(CompressionConfig(bits=8.0).bits) is int
    assert CompressionConfig(bits=8.0).key() == CompressionConfig(bits=np.int64(8)).key() == "8080a19e938920c0"
    assert CompressionConfig(finetune_steps=5.0).finetune_steps == 5
    assert CompressionConfig(prune_method="l1-structured", prune_ratio="0.5").prune_ratio == 0.5  # float() reads it
    assert CompressionConfig(prune_ratio=False).prune_ratio == 0.0
    assert CompressionConfig(bits=4, granularity=64).granularity == "group-64"
    assert isinstance(CompressionConfig(bits=8, layer_overrides=[{"pattern": "fc", "bits": 4}]).layer_overrides, tuple)


def test_replace_checks_a_config_like_the_constructor():
    import dataclasses

    with pytest.raises(ConfigError, match="bits 99 not supported"):
        dataclasses.replace(CompressionConfig(), bits=99)
    with pytest.raises(ConfigError, match="given with prune method 'none'"):
        dataclasses.replace(CompressionConfig(), prune_ratio=0.5)
    assert dataclasses.replace(CompressionConfig(), bits=4, granularity="g32").granularity == "group-32"


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": True}, "batch size True must be a whole number of at least 1"),
    ({"batch_size": 32.0}, "batch size 32.0 must be a whole number"),  # only an int ever counted here
    ({"batch_size": "32"}, "batch size '32' must be a whole number"),
    ({"bits": None}, "bits None not supported"),
    ({"bits": (True,)}, "bits True not supported"),
    ({"bits": ("8",)}, "bits '8' not supported"),
    ({"granularities": []}, "the sweep grid is empty: no granularities chosen"),
    ({"recover_unpruned": 1}, "recover_unpruned must be true or false, not 1"),
    ({"allocations": [{"bitz": 8}]}, "unknown config field"),
    ({"bitz": (8,)}, "SweepSpec has no setting 'bitz'"),
])
def test_sweep_spec_edge_values_are_refused_as_before_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message) as caught:
        SweepSpec(**kwargs)
    assert "\n" not in str(caught.value)


def test_sweep_spec_edge_values_accepted_as_before():
    import dataclasses

    assert SweepSpec(bits=[32, 8, 8]).bits == (32, 8)  # a list is a tuple, repeats dropped
    assert SweepSpec(bits=8).bits == (8,) and SweepSpec(prune_methods="l1-structured").prune_methods == ("l1-structured",)
    assert SweepSpec(bits=(4,), granularities=["64", "g64", "group-64"]).granularities == ("group-64",)
    assert len(SweepSpec(allocations=[CompressionConfig(bits=8), {"bits": 8}]).allocations) == 1
    assert SweepSpec() == SweepSpec(bits=32) and len({SweepSpec(), SweepSpec(bits=[32])}) == 1
    with pytest.raises(ConfigError, match="batch size 0 must be a whole number of at least 1"):
        dataclasses.replace(SweepSpec(), batch_size=0)
