"""Scenarios (model + data + metric): ``get_scenario("digits")``, ``get_scenario("text", data=...)``,
``get_scenario("hf:DIR", ...)``.

Each scenario file registers itself (``registry.register_scenario``) and the architectures it
builds (``registry.register_architecture``); importing this package loads them all.
"""
from __future__ import annotations

import importlib

from gemini_core.errors import GeminiError
from gemini_core.kinds.registry import KINDS
from gemini_core.scenarios import builtin, images, tabular, text  # noqa: F401  (each registers itself; this is their order)
from gemini_core.scenarios.base import PruneSpec, Scenario, Split, Splits, TrainSettings
from gemini_core.scenarios.registry import SCENARIOS, scenario_entry

DEFAULT_SCENARIO = "digits"


def _register_kind_scenarios() -> None:
    """Import the scenario modules that model kinds keep in their own folders (the causal LM's), so every door
    finds them by name; a kind's folder sits above this stage, so it is loaded by name, when first asked."""
    for info in list(KINDS.values()):
        if info.scenario_module:
            importlib.import_module(info.scenario_module)


def scenario_entries() -> dict:
    """Every registered scenario, the kinds' own included: name -> entry."""
    _register_kind_scenarios()
    return dict(SCENARIOS)


def scenario_names() -> list[str]:
    return [entry.display_name for entry in scenario_entries().values()]


def get_scenario(name: str, **options) -> Scenario:
    """Build a scenario by name; ``options`` are the data options (data, text_column, ...).

    The options are kept on ``scenario.options`` so a stored run can rebuild its scenario.
    """
    if name not in SCENARIOS or SCENARIOS[name].prefix:
        # A kind's scenario module imports its engine (the LLM's pulls transformers and OpenVINO: seconds on
        # 2 cores), so the built-in scenarios are found without loading them: the demo starts sooner.
        _register_kind_scenarios()
    entry = scenario_entry(name)
    if entry.data_kind == "builtin":
        unexpected = {k: v for k, v in options.items() if v not in (None, "", False)}
        if unexpected:
            raise GeminiError(f"scenario {name!r} uses its built-in data; remove {', '.join(unexpected)}")
    scenario = entry.factory(name[len(entry.name):], **options) if entry.prefix else entry.factory(**options)
    scenario.options = dict(options)
    return scenario


__all__ = ["SCENARIOS", "scenario_entries", "PruneSpec", "Scenario", "Split", "Splits", "TrainSettings", "get_scenario",
           "scenario_names", "DEFAULT_SCENARIO"]
