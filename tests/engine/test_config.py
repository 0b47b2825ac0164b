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
