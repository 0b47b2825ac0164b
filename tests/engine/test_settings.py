"""``@settings`` (gemini_core/settings.py): a frozen pydantic dataclass that still behaves as a dataclass and whose
every refusal is one ConfigError line naming the setting, ``dataclasses.replace`` included."""
from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Annotated, Literal

import numpy as np
import pytest
from pydantic import Field, StrictBool, StrictInt

from gemini_core.errors import ConfigError, DataError
from gemini_core.settings import Items, Number, OneOf, Says, Whole, settings

REGISTRY = {"alpha": 1, "beta": 2}


@settings
class Inner:
    size: Annotated[Whole, Field(ge=1)] = 4


@settings(where="entry {label!r}")
class Example:
    label: str = "e"
    bits: Annotated[Whole, OneOf((32, 8, 4))] = 32
    ratio: Annotated[float, Field(ge=0, le=0.95, title="prune ratio")] = 0.0
    steps: Annotated[Whole, Field(ge=0, title="fine-tune steps")] = 0
    batch: Annotated[StrictInt, Field(ge=1, title="batch size")] = 8
    lr: Annotated[float | None, Field(gt=0)] = None
    rate: Annotated[Number, Field(gt=0)] = 1.0
    method: Annotated[str, OneOf(REGISTRY)] = "alpha"
    mode: Literal["fast", "slow"] = "fast"
    flag: StrictBool = False
    share: Annotated[float | None, Field(ge=0, le=1), Says("{name} {value} must be in [0, 1]")] = None
    axis: Annotated[Items, Field(min_length=1), Says("the grid is empty: no {name} chosen")] = (1,)
    inner: Inner = Inner()

    def __post_init__(self) -> None:
        if self.steps and self.method == "beta":  # a rule between two fields stays here
            raise ConfigError("beta takes no fine-tune steps")
        if self.label == "data":
            raise DataError("a data problem stays a data problem")
        object.__setattr__(self, "label", self.label.strip())  # normalisation stays here too


@pytest.mark.parametrize("kwargs, message", [
    ({"ratio": 0.96}, "entry 'e': prune ratio 0.96 is outside [0, 0.95]"),
    ({"ratio": float("nan")}, "prune ratio nan is outside [0, 0.95]"),
    ({"ratio": 1}, "prune ratio 1.0 is outside [0, 0.95]"),
    ({"ratio": "half"}, "prune ratio 'half' is not a number"),
    ({"steps": -5}, "fine-tune steps -5 must be 0 or more"),
    ({"batch": 0}, "batch size 0 must be a whole number of at least 1"),
    ({"lr": 0}, "lr 0.0 must be positive"),
    ({"share": 2}, "share 2.0 must be in [0, 1]"),
    ({"axis": ()}, "the grid is empty: no axis chosen"),
    ({"bits": 5}, "bits 5 not supported; choose one of 32, 8, 4"),
    ({"method": "gamma"}, "unknown method 'gamma'; choose one of alpha, beta"),
    ({"method": 3}, "unknown method 3; choose one of alpha, beta"),
    ({"mode": "medium"}, "unknown mode 'medium'; choose one of fast, slow"),
    ({"flag": 1}, "flag must be true or false, not 1"),
    ({"label": 5}, "label must be text, not 5"),
    ({"axis": object}, "axis must be a list, not <class 'object'>"),
    ({"inner": {"size": 0}}, "size 0 must be a whole number of at least 1"),
])
def test_a_refused_value_is_one_line_naming_the_setting(kwargs, message):
    with pytest.raises(ConfigError) as caught:
        Example(**kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("entry ")  # the instance's name in front of a field's message


def test_an_unknown_field_is_a_config_error_not_a_type_error():
    with pytest.raises(ConfigError, match="Example has no setting 'bitz'; its settings are label, bits"):
        Example(bitz=8)
    with pytest.raises(ConfigError, match="Inner takes at most 1 settings"):
        Inner(4, 5)


def test_cross_field_rules_and_errors_of_post_init_are_raised_as_they_are():
    with pytest.raises(ConfigError) as caught:
        Example(method="beta", steps=3)
    assert str(caught.value) == "beta takes no fine-tune steps"  # no prefix: __post_init__ words its own
    with pytest.raises(DataError, match="a data problem stays a data problem"):
        Example(label="data")
    assert Example(label="  x ").label == "x"


def test_replace_is_checked_like_the_constructor():
    base = Example(bits=8)
    with pytest.raises(ConfigError) as by_replace:
        dataclasses.replace(base, bits=99)
    with pytest.raises(ConfigError) as by_constructor:
        Example(bits=99)
    assert str(by_replace.value) == str(by_constructor.value) == "entry 'e': bits 99 not supported; choose one of 32, 8, 4"
    assert dataclasses.replace(base, bits=4) == Example(bits=4)
    with pytest.raises(ConfigError, match="beta takes no fine-tune steps"):
        dataclasses.replace(Example(steps=2), method="beta")


@pytest.mark.parametrize("value, expected", [(8, 8), (8.0, 8), (np.int64(8), 8), (np.float64(8.0), 8)])
def test_whole_numbers_take_integral_values(value, expected):
    made = Example(bits=value)
    assert made.bits == expected and type(made.bits) is int


@pytest.mark.parametrize("value", [True, False, "8", 8.5, float("nan"), None])
def test_whole_numbers_refuse_bools_text_and_fractions(value):
    with pytest.raises(ConfigError):
        Example(bits=value)
    with pytest.raises(ConfigError, match="must be a whole number"):
        Inner(size=value)


def test_the_other_number_types_keep_their_own_rules():
    assert Example(ratio="0.5").ratio == 0.5  # a plain float field reads what float() reads
    assert Example(rate=2).rate == 2.0
    for value in (True, "2"):
        with pytest.raises(ConfigError, match="is not a number"):
            Example(rate=value)
    with pytest.raises(ConfigError, match="batch size 8.0 must be a whole number"):
        Example(batch=8.0)  # StrictInt: only an int counts
    with pytest.raises(ConfigError, match="batch size True"):
        Example(batch=True)


def test_items_take_one_value_or_any_iterable_without_repeats():
    assert Example(axis=[3, 1, 3]).axis == (3, 1)  # a list becomes a tuple, order kept
    assert Example(axis=5).axis == (5,)
    assert Example(axis="ab").axis == ("ab",)
    assert Example(axis=None).axis == (None,)


def test_a_registry_is_read_when_a_value_is_checked():
    with pytest.raises(ConfigError):
        Example(method="gamma")
    REGISTRY["gamma"] = 3
    try:
        assert Example(method="gamma").method == "gamma"
    finally:
        del REGISTRY["gamma"]


def test_settings_stay_frozen_hashable_comparable_dataclasses():
    a, b = Example(bits=8, axis=[1, 2]), Example(bits=8.0, axis=(1, 2))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1 and {a: "x"}[b] == "x"
    assert a != Example(bits=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.bits = 4
    assert [f.name for f in dataclasses.fields(Example)][:3] == ["label", "bits", "ratio"]
    assert dataclasses.asdict(Inner()) == {"size": 4} and "bits" in Example.__dataclass_fields__
    assert dataclasses.fields(Example)[1].default == 32 and Example.bits == 32
    assert pickle.loads(pickle.dumps(a)) == a and copy.deepcopy(a) == a


def test_nested_settings_are_named_by_their_own_class():
    with pytest.raises(ConfigError, match="Inner has no setting 'width'; its settings are size"):
        Example(inner={"width": 3})
    with pytest.raises(ConfigError, match="Needs needs label"):
        Needs()


@settings
class Needs:
    label: str
