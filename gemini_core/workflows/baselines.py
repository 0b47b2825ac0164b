"""The baseline a sweep measures: cached in this home, else shipped with the product (checked), else trained; and
the baseline a stored run was measured on, rebuilt from its description (plain or adaptive)."""
from __future__ import annotations

from typing import Callable

from gemini_core.adaptive import baseline_from_adaptive_description
from gemini_core.checkpoint.shipped import install_shipped
from gemini_core.device import pick_device
from gemini_core.progress import ProgressFn
from gemini_core.scenarios import get_scenario
from gemini_core.scenarios.base import TrainSettings
from gemini_core.training.baseline import Baseline, baseline_key, get_baseline, is_cached


def load_or_train(scenario, settings: TrainSettings | None = None, progress: ProgressFn | None = None,
                  retrain: bool = False, device=None, should_stop: Callable[[], bool] | None = None) -> Baseline:
    """``get_baseline``, except that a home without the baseline first takes the one the product ships for the same
    recipe (``checkpoint.shipped``: verified before use): the demo's first point comes without training."""
    settings = settings or scenario.default_train
    device = device or pick_device()
    key = baseline_key(scenario, settings, device)
    if not retrain and not is_cached(key):
        shipped = install_shipped(scenario, settings, key, progress)
        if shipped is not None:
            return shipped
    return get_baseline(scenario, settings, progress=progress, retrain=retrain, device=device,
                        should_stop=should_stop)


def baseline_from_description(description: dict, progress: ProgressFn | None = None, device=None) -> Baseline:
    """Rebuild the scenario and load (or retrain) the baseline a stored run was measured on."""
    scenario = get_scenario(description["scenario"], **description.get("scenario_options", {}))
    if description.get("adaptive"):
        return baseline_from_adaptive_description(scenario, description, progress=progress, device=device)
    settings = TrainSettings(**description["train_settings"])
    return load_or_train(scenario, settings, progress=progress, device=device)
