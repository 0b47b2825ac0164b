"""One sensitivity driver for every model kind: which parts of the model can be compressed, and how much,
measured one part at a time (a classifier's coupled groups and layers, a causal LM's decoder blocks).

The analysis is stored in the run store as it grows and a complete one is reused for the same model and
parameters; the kind decides what a part is and how its quality change is measured.
"""
from __future__ import annotations

from collections.abc import Callable

from gemini_core.kinds.registry import engine, kind_for_scenario
from gemini_core.progress import ProgressFn
from gemini_core.results.sensitivity import SensitivityProfile
from gemini_core.results.store import Store


def run_analysis(scenario, params=None, store: Store | None = None, *, baseline=None, device=None,
                 force: bool = False, progress: ProgressFn | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_profile: Callable[[SensitivityProfile], None] | None = None) -> SensitivityProfile:
    """Analyse ``scenario``'s model with the kind's ``params`` (None: the kind's defaults). ``baseline``: the
    trained model for kinds that train one (trained or loaded when None)."""
    return engine(kind_for_scenario(scenario.name)).analyse(
        scenario, params, store or Store(), baseline=baseline, device=device, force=force, progress=progress,
        should_stop=should_stop, on_profile=on_profile)


def params_from_dict(scenario_name: str, data: dict):
    """The kind's analysis parameters from their stored form."""
    return engine(kind_for_scenario(scenario_name)).sensitivity_params(data)
