"""Sweep settings as a recipe: the Sweep form <-> a JSON or YAML file, and a stored run's settings back into
the form (History's "Re-run these settings"). Validation is the engine's ``SweepSpec``."""
from __future__ import annotations

import json

import streamlit as st
import yaml

from gemini_core.errors import ConfigError, GeminiError
from gemini_core.workflows.sweep_spec import SweepSpec

FORM = {"sw_methods": "prune_methods", "sw_ratios": "prune_ratios", "sw_bits": "bits", "sw_gran": "granularities",
        "sw_exec": "executions", "sw_ft": "finetune_steps", "sw_batch": "batch_size"}
KIND = "gemini-sweep-recipe"
MAX_RECIPE_BYTES = 64 * 1024


def recipe_from_form(state, scenario: str) -> dict:
    spec = {field: (list(state.get(key) or []) if field != "batch_size" else int(state.get(key) or 32))
            for key, field in FORM.items()}
    recipe = {"kind": KIND, "version": 1, "scenario": scenario, "spec": spec}
    if state.get("sw_name"):
        recipe["name"] = state["sw_name"]
    return recipe


def dump(recipe: dict, fmt: str) -> bytes:
    if fmt == "yaml":
        return yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True).encode("utf-8")
    return (json.dumps(recipe, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def parse(data: bytes, filename: str = "recipe") -> dict:
    """A recipe file (JSON or YAML) -> the form's values; one clear error for anything else."""
    if len(data) > MAX_RECIPE_BYTES:
        raise ConfigError(f"{filename} is {len(data)} bytes; a recipe is at most {MAX_RECIPE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
        recipe = yaml.safe_load(text)  # JSON is YAML too
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{filename} is not a JSON or YAML recipe: {str(exc).splitlines()[0]}") from None
    if not isinstance(recipe, dict) or recipe.get("kind") != KIND or not isinstance(recipe.get("spec"), dict):
        raise ConfigError(f"{filename} is not a sweep recipe (expected kind: {KIND} and a spec mapping)")
    return form_values(recipe["spec"], name=recipe.get("name"))


def form_values(spec: dict, name: str | None = None) -> dict:
    """A stored spec -> the Sweep form's session values, validated by SweepSpec."""
    unknown = sorted(set(spec) - set(FORM.values()) - {"recoveries", "allocations"})
    if unknown:
        raise ConfigError(f"unknown sweep setting(s): {', '.join(unknown)}")
    fields = {f: spec[f] for f in FORM.values() if f in spec}
    try:
        SweepSpec.from_dict(fields)
    except GeminiError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the recipe's settings are not valid: {exc}") from None
    values = {key: (list(fields[f]) if f != "batch_size" else int(fields[f])) for key, f in FORM.items() if f in fields}
    if name:
        values["sw_name"] = str(name)[:200]
    return values


def load_into_form(values: dict) -> None:
    st.session_state.update(values)
    extra = [r for r in values.get("sw_ratios", []) if r not in st.session_state.get("sw_ratio_choices", [])]
    if extra:
        st.session_state["sw_ratio_choices"] = sorted(set(st.session_state.get("sw_ratio_choices", [])) | set(extra))
