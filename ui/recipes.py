"""Sweep settings as a recipe: the Sweep form <-> a JSON or YAML file, and a stored run's settings back into
the form (History's "Re-run these settings"). Validation is the engine's ``SweepSpec`` (classifier runs)
or ``LLMSweepSpec`` (LLM runs, whose form has its own keys)."""
from __future__ import annotations

import json

import streamlit as st
import yaml

from gemini_core.errors import ConfigError, GeminiError
from gemini_core.kinds.llm.quantize import group_size_of
from gemini_core.kinds.llm.sweep import LLMSweepSpec
from gemini_core.workflows.sweep_spec import SweepSpec
from ui.llm import FORM_OPTIONS

FORM = {"sw_methods": "prune_methods", "sw_ratios": "prune_ratios", "sw_bits": "bits", "sw_gran": "granularities",
        "sw_exec": "executions", "sw_ft": "finetune_steps", "sw_batch": "batch_size"}
# the LLM grid form (ui/llm.py): key -> LLMSweepSpec field; the recovery steps box holds one number
LLM_FORM = {"llm_quant": "quant_methods", "llm_bits": "bits", "llm_groups": "group_sizes", "llm_prune": "prune_methods",
            "llm_sparsity": "sparsities", "llm_mlp": "mlp_ratios", "llm_heads": "head_ratios",
            "llm_recovery": "recoveries", "llm_steps": "recovery_steps", "llm_exec": "executions"}
KIND = "gemini-sweep-recipe"
MAX_RECIPE_BYTES = 64 * 1024


def _llm_spec_from_form(state) -> dict:
    spec = {field: list(state.get(key) or []) for key, field in LLM_FORM.items() if key != "llm_steps"}
    spec["group_sizes"] = [group_size_of(g) for g in spec["group_sizes"]]
    spec["recovery_steps"] = [int(state.get("llm_steps") or 20)]
    return {"kind": "llm", **spec}


def recipe_from_form(state, scenario: str) -> dict:
    if scenario == "llm":
        spec = _llm_spec_from_form(state)
    else:
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
    """ConfigError when an LLM grid meets a classifier model or the other way round."""
    if scenario is None or (spec.get("kind") == "llm") == (scenario == "llm"):
        return
    if spec.get("kind") == "llm":
        raise ConfigError(f"{what} is an LLM sweep; choose the LLM on the Model page first")
    raise ConfigError(f"{what} is a classifier sweep; the current model is the LLM (choose another on the Model page)")


def _llm_form_values(spec: dict, name: str | None) -> dict:
    """An LLM spec -> the LLM form's session values, validated by LLMSweepSpec (the run's perplexity
    settings are not part of the form: the dashboard's defaults apply)."""
    unknown = sorted(set(spec) - set(LLM_FORM.values()) - {"kind", "settings"})
    if unknown:
        raise ConfigError(f"unknown LLM sweep setting(s): {', '.join(unknown)}")
    fields = {f: spec[f] for f in LLM_FORM.values() if f in spec}
    if not all(isinstance(v, list) for v in fields.values()):
        raise ConfigError("every LLM sweep setting is a list of values")
    try:
        checked = LLMSweepSpec.from_dict(fields)
    except GeminiError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the recipe's settings are not valid: {exc}") from None
    values = {key: list(getattr(checked, f)) for key, f in LLM_FORM.items() if f in fields and key != "llm_steps"}
    if "llm_groups" in values:
        values["llm_groups"] = ["per-channel" if g is None else g for g in values["llm_groups"]]
    for key, chosen in values.items():
        missing = [v for v in chosen if v not in FORM_OPTIONS[key]]
        if missing:
            raise ConfigError(f"{LLM_FORM[key].replace('_', ' ')} {missing[0]!r} is not offered by the dashboard's "
                              f"form (offered: {', '.join(map(str, FORM_OPTIONS[key]))}); run it with the CLI")
    if "recovery_steps" in fields:
        steps = checked.recovery_steps
        if len(steps) != 1 or not 1 <= int(steps[0]) <= 1000:
            raise ConfigError(f"recovery steps {list(steps)}: the dashboard's form runs one count from 1 to 1000; "
                              "run several with the CLI")
        values["llm_steps"] = int(steps[0])
    if name:
        values["sw_name"] = str(name)[:200]
    return values


def form_values(spec: dict, name: str | None = None) -> dict:
    """A stored spec -> the Sweep form's session values, validated by SweepSpec (LLMSweepSpec for an LLM's)."""
    if spec.get("kind") == "llm":
        return _llm_form_values(spec, name)
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
