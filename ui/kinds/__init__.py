"""Each model kind's parts of the dashboard, one module per kind (``ui/kinds/<kind>.py``): its grid form on the
Sweep page, its sensitivity form and profile, its point figures and reload check on the Export page, its
recipe form mapping and, for kinds that load rather than train their model, the Model page's section.

The pages ask the kind of the current model for these parts and never which kind it is. A kind's module
here has the name the kind registers in ``gemini_core.kinds`` (torch-free: importing this package and the
registry loads no torch).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from gemini_core.kinds.registry import KindInfo, kind_for_scenario, kind_info


def for_kind(kind: str | KindInfo | None) -> ModuleType:
    info = kind if isinstance(kind, KindInfo) else kind_info(kind)
    return importlib.import_module(f"ui.kinds.{info.name}")


def for_scenario(scenario: str) -> ModuleType:
    """The dashboard parts of the kind ``scenario`` builds."""
    return for_kind(kind_for_scenario(scenario))
