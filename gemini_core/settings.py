"""Settings: frozen pydantic dataclasses whose refusals are one-line ``ConfigError``s.

Every configuration the product builds (a compression config, a sweep grid, training and analysis settings) is
declared with ``@settings``: a frozen dataclass, so ``dataclasses.fields``, ``asdict`` and ``replace``, equality
and hashing work as on any dataclass, that pydantic checks whenever one is made (``dataclasses.replace`` too).
Types and simple bounds are annotations on the fields; rules between fields and normalisation stay in the
class's ``__post_init__``, which pydantic runs once the fields are valid.

What pydantic refuses becomes one line naming the setting in the product's words, e.g.
``prune ratio 0.96 is outside [0, 0.95]``, ``batch size 0 must be a whole number of at least 1`` or
``unknown recovery 'kd'; choose one of finetune, qat, distill``. The name is the field's ``title`` (or its name
with spaces); ``Says`` words a bound differently where a field needs it. A ``ConfigError`` (or any other
``GeminiError``) raised by a validator or ``__post_init__`` already says what is wrong and is raised as it is.

The field types that keep the product's rules where pydantic's lax mode would be looser:

- ``Whole``: an integer; ``8.0`` (and numpy integers) are taken as 8, but ``True``, ``"8"`` and ``8.5`` are
  refused (lax pydantic takes ``True`` as 1 and ``"8"`` as 8);
- ``Number``: a real number given as a number (bools and text are refused); a plain ``float`` field takes
  what ``float()`` reads, numeric text included, as the hand checks did;
- ``pydantic.StrictInt`` where only an ``int`` ever counted, ``pydantic.StrictBool`` for true/false;
- ``Items``: a tuple from one value or any iterable, repeats dropped, order kept (the sweep grids' axes).

Torch-free, and importing nothing of the project's but ``errors``, so every layer can declare its settings.
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
import typing
from typing import Annotated, Any, Literal, TypeVar

import annotated_types
from pydantic import BeforeValidator, ConfigDict, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, core_schema

from gemini_core.errors import ConfigError, GeminiError

# extra="forbid": an unknown keyword is one line naming it, not a TypeError; arbitrary types: fields may hold
# the engine's own classes (a sweep spec's CompressionConfig allocations) as they are.
CONFIG = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


# -- field types ---------------------------------------------------------------------------------------------
def _whole(value):
    if isinstance(value, (bool, str, bytes)):
        raise PydanticCustomError("whole_number", "must be a whole number")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        try:
            if int(value) == value:
                return int(value)
        except (ValueError, OverflowError):  # nan, inf
            pass
        raise PydanticCustomError("whole_number", "must be a whole number")
    return value  # None, a list: the int validator refuses it


def _number(value):
    if isinstance(value, (bool, str, bytes)):
        raise PydanticCustomError("number", "is not a number")
    return value


def _items(value):
    if value is None or isinstance(value, (str, int, float)):
        value = (value,)
    try:
        return tuple(dict.fromkeys(value))
    except TypeError:  # not iterable, or an unhashable item: pydantic's tuple check names it
        return value


T = TypeVar("T")
Whole = Annotated[int, BeforeValidator(_whole)]
Number = Annotated[float, BeforeValidator(_number)]
Items = Annotated[tuple[T, ...], BeforeValidator(_items)]  # Items[str]: each item checked as a str


class Says:
    """Annotated metadata: how to word a value this field's bounds (or its minimum length) refuse, a template
    with ``{name}`` and ``{value}``; without it the words come from the bounds."""

    def __init__(self, text: str):
        self.text = text

    def __get_pydantic_core_schema__(self, source, handler):
        return handler(source)


class OneOf:
    """Annotated metadata: the value must be one of ``choices``, a tuple or a registry (a dict, read when a value
    is checked, so an entry registered after import counts). ``says``: the refusal's words, a template with
    ``{name}``, ``{value}`` and ``{choices}``. A value of the wrong type is refused with the same words."""

    def __init__(self, choices, says: str | None = None):
        self.choices = choices
        self.says = says

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def _check(self, value):
        if value not in self.choices:
            raise PydanticCustomError("one_of", "is not one of the choices")
        return value


# -- the decorator -------------------------------------------------------------------------------------------
def settings(cls=None, *, where: str | None = None):
    """Make ``cls`` a frozen pydantic dataclass whose refusals are one-line ConfigErrors.

    ``where``: a template naming the instance in every message about one of its fields, formatted with the
    values given (``"layer override {pattern!r}"``); messages raised by ``__post_init__`` name it themselves."""

    def wrap(cls):
        cls = _pydantic_dataclass(frozen=True, config=CONFIG)(cls)
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            try:
                init(self, *args, **kwargs)
            except ValidationError as exc:
                raise _config_error(cls, exc, where, args, kwargs) from None

        cls.__init__ = __init__
        return cls

    return wrap if cls is None else wrap(cls)


_SHAPE_ERRORS = ("unexpected_keyword_argument", "unexpected_positional_argument", "missing_argument", "missing")


def _config_error(cls, exc: ValidationError, where: str | None, args: tuple, kwargs: dict) -> GeminiError:
    error = exc.errors(include_url=False)[0]
    names = list(cls.__pydantic_fields__)
    loc = error["loc"]
    if loc and isinstance(loc[0], int) and loc[0] < len(names):  # a value given by position
        loc = (names[loc[0]],) + tuple(loc[1:])
        error = {**error, "loc": loc}
    prefix = ""
    if where and loc and error["type"] not in _SHAPE_ERRORS:
        given = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        given.update(zip(names, args))
        given.update(kwargs)
        prefix = where.format_map(given) + ": "
    original = (error.get("ctx") or {}).get("error")
    if isinstance(original, GeminiError):
        # A validator's or __post_init__'s own words; a field validator's get the instance's name in front.
        return type(original)(prefix + str(original)) if prefix else original
    return ConfigError(prefix + _words(cls, error))


def _field(cls, loc: tuple) -> tuple[type, str, FieldInfo | None]:
    """(the settings class holding the field, the name a message uses, the field's FieldInfo) for an error at
    ``loc``, through nested settings (a sweep spec's LLMSettings)."""
    holder, owner, name, info = cls, cls, str(loc[-1]) if loc else cls.__name__, None
    for part in loc:
        fields = getattr(owner, "__pydantic_fields__", None) or {}
        if isinstance(part, str) and part in fields:
            holder, info, name = owner, fields[part], part
            owner = info.annotation if isinstance(info.annotation, type) else None
        elif owner is not None and fields:
            holder = owner  # a name the nested settings do not have
    if info is None or holder is not cls and name not in holder.__pydantic_fields__:
        return holder, name.replace("_", " "), None
    return holder, info.title or name.replace("_", " "), info


def _facts(info: FieldInfo | None) -> dict:
    """What a field's annotation says: its bounds, its choices, its ``Says`` text and the scalar types in it
    (through Optional, tuple items and nested Annotated)."""
    facts = {"bounds": {}, "choices": None, "says": None, "types": set()}
    if info is None:
        return facts
    metadata, stack = list(info.metadata), [info.annotation]
    while stack:
        annotation = stack.pop()
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            inner, *extra = typing.get_args(annotation)
            stack.append(inner)
            metadata.extend(extra)
        elif origin is Literal:
            facts["choices"] = facts["choices"] or OneOf(typing.get_args(annotation))
        elif origin is not None:
            stack.extend(typing.get_args(annotation))
        elif isinstance(annotation, type):
            facts["types"].add(annotation)
    while metadata:
        item = metadata.pop(0)
        if isinstance(item, FieldInfo):
            metadata.extend(item.metadata)
        elif isinstance(item, (annotated_types.Ge, annotated_types.Gt, annotated_types.Le, annotated_types.Lt)):
            kind = type(item).__name__.lower()
            facts["bounds"].setdefault(kind, getattr(item, kind))
        elif isinstance(item, OneOf):
            facts["choices"] = item
        elif isinstance(item, Says):
            facts["says"] = item.text
        elif isinstance(item, BeforeValidator) and item.func is _whole:
            facts["types"].add(int)
    return facts


_TYPE_ERRORS = ("int_type", "int_parsing", "int_from_float", "whole_number", "float_type", "float_parsing", "number",
                "string_type", "bool_type", "bool_parsing", "literal_error", "one_of")
_BOUNDS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short")


def _words(cls, error: dict) -> str:
    """One line for pydantic's ``error``, in the product's words."""
    kind, loc, value = error["type"], error["loc"], error.get("input")
    holder, name, info = _field(cls, loc)
    facts = _facts(info)
    fields = ", ".join(holder.__pydantic_fields__)
    if kind == "unexpected_keyword_argument":
        return f"{holder.__name__} has no setting {loc[-1]!r}; its settings are {fields}"
    if kind == "unexpected_positional_argument":
        return f"{holder.__name__} takes at most {len(holder.__pydantic_fields__)} settings ({fields})"
    if kind in ("missing", "missing_argument"):
        return f"{holder.__name__} needs {name}"
    if kind in _TYPE_ERRORS and facts["choices"] is not None:
        choices = facts["choices"]
        listed = ", ".join(map(str, choices.choices))
        if choices.says:
            return choices.says.format(name=name, value=value, choices=listed)
        if all(isinstance(c, numbers.Number) for c in choices.choices):
            return f"{name} {value!r} not supported; choose one of {listed}"
        return f"unknown {name} {value!r}; choose one of {listed}"
    if kind in ("int_type", "int_parsing", "int_from_float", "whole_number"):
        low = facts["bounds"].get("ge")
        return f"{name} {value!r} must be a whole number" + (f" of at least {low}" if low else "")
    if kind in ("float_type", "float_parsing", "number"):
        return f"{name} {value!r} is not a number"
    if kind in ("tuple_type", "list_type"):
        return f"{name} must be a list, not {value!r}"
    if kind == "string_type":
        return f"{name} must be text, not {value!r}"
    if kind in ("bool_type", "bool_parsing"):
        return f"{name} must be true or false, not {value!r}"
    if kind == "finite_number":
        return f"{name} {value} must be a finite number"
    if kind in _BOUNDS:
        return _bound_words(kind, name, value, facts)
    if kind == "value_error":
        return f"{name} {value!r}: {(error.get('ctx') or {}).get('error')}" if loc else \
            f"{cls.__name__}: {(error.get('ctx') or {}).get('error')}"
    return f"{name} {value!r}: {error['msg']}" if loc else f"{cls.__name__}: {error['msg']}"


def _bound_words(kind: str, name: str, value: Any, facts: dict) -> str:
    if float in facts["types"] and int not in facts["types"] and kind != "too_short":
        try:
            value = float(value)  # as the field holds it: "lr 0.0", not "lr 0"
        except (TypeError, ValueError):
            pass
    if facts["says"]:
        return facts["says"].format(name=name, value=value)
    if kind == "too_short":
        return f"{name} must not be empty"
    bounds = facts["bounds"]
    low = bounds.get("ge", bounds.get("gt"))
    high = bounds.get("le", bounds.get("lt"))
    if low is not None and high is not None:
        return (f"{name} {value} is outside {'[' if 'ge' in bounds else '('}{low}, {high}"
                f"{']' if 'le' in bounds else ')'}")
    if "ge" in bounds:
        if bounds["ge"] == 0:
            return f"{name} {value} must be 0 or more"
        if int in facts["types"]:
            return f"{name} {value} must be a whole number of at least {bounds['ge']}"
        return f"{name} {value} must be at least {bounds['ge']}"
    if "gt" in bounds:
        return f"{name} {value} must be positive" if bounds["gt"] == 0 else f"{name} {value} must be above {low}"
    if "le" in bounds:
        return f"{name} {value} must be at most {high}"
    return f"{name} {value} must be below {high}"
