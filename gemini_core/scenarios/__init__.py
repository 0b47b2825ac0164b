"""Scenarios (model + data + metric): ``get_scenario("digits")``, ``get_scenario("text", data=...)``,
``get_scenario("hf:DIR", ...)``.

Each scenario file registers itself (``registry.register_scenario``) and the architectures it
builds (``registry.register_architecture``); importing this package loads them all.
"""
from __future__ import annotations

from gemini_core.errors import GeminiError
from gemini_core.scenarios import builtin, images, tabular, text  # noqa: F401  (each registers itself; this is their order)
from gemini_core.scenarios.base import PruneSpec, Scenario, Split, Splits, TrainSettings
from gemini_core.scenarios.registry import SCENARIOS, scenario_entry

DEFAULT_SCENARIO = "digits"


def scenario_names() -> list[str]:
    return [entry.display_name for entry in SCENARIOS.values()]


def get_scenario(name: str, **options) -> Scenario:
    """Build a scenario by name; ``options`` are the data options (data, text_column, ...).

    The options are kept on ``scenario.options`` so a stored run can rebuild its scenario.
    """
    entry = scenario_entry(name)
    if entry.data_kind == "builtin":
        unexpected = {k: v for k, v in options.items() if v not in (None, "", False)}
        if unexpected:
            raise GeminiError(f"scenario {name!r} uses its built-in data; remove {', '.join(unexpected)}")
    scenario = entry.factory(name[len(entry.name):], **options) if entry.prefix else entry.factory(**options)
    scenario.options = dict(options)
    return scenario


__all__ = ["SCENARIOS", "PruneSpec", "Scenario", "Split", "Splits", "TrainSettings", "get_scenario", "scenario_names",
           "DEFAULT_SCENARIO"]
