"""Scenario registry: ``get_scenario("digits")``, ``get_scenario("text", data=...)``, ``get_scenario("hf:DIR", ...)``."""
from __future__ import annotations

from gemini_core.errors import GeminiError
from gemini_core.scenarios.base import PruneSpec, Scenario, Split, Splits, TrainSettings
from gemini_core.scenarios.builtin import BreastCancerScenario, DigitsScenario

BUILTIN = {"digits": DigitsScenario, "breast-cancer": BreastCancerScenario}
DEFAULT_SCENARIO = "digits"
# Scenarios that need the user's data (or a model) as options.
USER_DATA = ("text", "images", "tabular", "hf:<model id or directory>")


def scenario_names() -> list[str]:
    return list(BUILTIN) + list(USER_DATA)


def get_scenario(name: str, **options) -> Scenario:
    """Build a scenario by name; ``options`` are the data options (data, text_column, ...).

    The options are kept on ``scenario.options`` so a stored run can rebuild its scenario.
    """
    scenario = _build(name, options)
    scenario.options = dict(options)
    return scenario


def _build(name: str, options: dict) -> Scenario:
    if name in BUILTIN:
        unexpected = {k: v for k, v in options.items() if v not in (None, "", False)}
        if unexpected:
            raise GeminiError(f"scenario {name!r} uses its built-in data; remove {', '.join(unexpected)}")
        return BUILTIN[name]()
    if name == "text" or name.startswith("hf:"):
        from gemini_core.scenarios.text import TextScenario

        model_source = None if name == "text" else name[3:]
        return TextScenario(model_source=model_source, **options)
    if name == "images":
        from gemini_core.scenarios.images import ImagesScenario

        return ImagesScenario(**options)
    if name == "tabular":
        from gemini_core.scenarios.tabular import TabularScenario

        return TabularScenario(**options)
    raise GeminiError(f"unknown scenario {name!r}; choose one of {', '.join(scenario_names())}")


__all__ = ["PruneSpec", "Scenario", "Split", "Splits", "TrainSettings", "get_scenario", "scenario_names",
           "DEFAULT_SCENARIO"]
