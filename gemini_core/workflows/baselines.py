"""The baseline a stored run was measured on, rebuilt from its description (plain or adaptive)."""
from __future__ import annotations

from gemini_core.adaptive import baseline_from_adaptive_description
from gemini_core.progress import ProgressFn
from gemini_core.scenarios import get_scenario
from gemini_core.scenarios.base import TrainSettings
from gemini_core.training.baseline import Baseline, get_baseline


def baseline_from_description(description: dict, progress: ProgressFn | None = None, device=None) -> Baseline:
    """Rebuild the scenario and load (or retrain) the baseline a stored run was measured on."""
    scenario = get_scenario(description["scenario"], **description.get("scenario_options", {}))
    if description.get("adaptive"):
        return baseline_from_adaptive_description(scenario, description, progress=progress, device=device)
    settings = TrainSettings(**description["train_settings"])
    return get_baseline(scenario, settings, progress=progress, device=device)
