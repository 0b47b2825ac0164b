"""Sweep settings as a recipe: the Sweep form <-> a JSON or YAML file, and a stored run's settings back into
the form (History's "Re-run these settings"). The form's keys and the validation are the kind's
(``ui/kinds/<kind>.py`` and its engine's grid); a recipe names its kind (none: a classifier's, as recipes
written before kinds were named)."""
from __future__ import annotations

import json

import streamlit as st
import yaml

from gemini_core.errors import ConfigError, GeminiError
from gemini_core.kinds.registry import kind_for_scenario, kind_of
from ui.kinds import for_kind

KIND = "gemini-sweep-recipe"
MAX_RECIPE_BYTES = 64 * 1024


def recipe_from_form(state, scenario: str) -> dict:
    spec = for_kind(kind_for_scenario(scenario)).spec_from_form(state)
    recipe = {"kind": KIND, "version": 1, "scenario": scenario, "spec": spec}
    if state.get("sw_name"):
        recipe["name"] = state["sw_name"]
    return recipe


def dump(recipe: dict, fmt: str) -> bytes:
    if fmt == "yaml":
        return yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True).encode("utf-8")
    return (json.dumps(recipe, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def parse(data: bytes, filename: str = "recipe", scenario: str | None = None) -> dict:
    """A recipe file (JSON or YAML) -> the form's values; one clear error for anything else (also when
    the recipe's kind of sweep, LLM or classifier, is not the one of the current model ``scenario``)."""
    if len(data) > MAX_RECIPE_BYTES:
        raise ConfigError(f"{filename} is {len(data)} bytes; a recipe is at most {MAX_RECIPE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
        recipe = yaml.safe_load(text)  # JSON is YAML too
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{filename} is not a JSON or YAML recipe: {str(exc).splitlines()[0]}") from None
    if not isinstance(recipe, dict) or recipe.get("kind") != KIND or not isinstance(recipe.get("spec"), dict):
        raise ConfigError(f"{filename} is not a sweep recipe (expected kind: {KIND} and a spec mapping)")
    check_kind(recipe["spec"], scenario, filename)
    return form_values(recipe["spec"], name=recipe.get("name"))


def check_kind(spec: dict, scenario: str | None, what: str) -> None:
    """ConfigError when a grid of one kind meets a model of another (an LLM grid and a classifier, ...)."""
    if scenario is None:
        return
    wanted, current = _kind_of_spec(spec), kind_for_scenario(scenario)
    if wanted is not current:
        raise ConfigError(f"{what} is {wanted.sweep_noun}; choose {wanted.model_noun} on the Model page first "
                          f"(the current model is {current.model_noun})")


def _kind_of_spec(spec: dict):
    try:
        return kind_of(spec)
    except GeminiError as exc:
        raise ConfigError(f"the recipe's kind: {exc}") from None


def form_values(spec: dict, name: str | None = None) -> dict:
    """A stored spec -> the Sweep form's session values, validated by the spec's kind."""
    values = for_kind(_kind_of_spec(spec)).form_values(spec)
    if name:
        values["sw_name"] = str(name)[:200]
    return values


def load_into_form(values: dict, scenario: str) -> None:
    st.session_state.update(values)
    for_kind(kind_for_scenario(scenario)).after_load(values)
