"""Every registered model kind provides what the shared doors call (gemini_core/kinds/api.py), and its
description is readable without torch."""
from __future__ import annotations

import subprocess
import sys

import pytest

from gemini_core.errors import GeminiError
from gemini_core.kinds import api
from gemini_core.kinds.registry import KINDS, engine, kind_for_scenario, kind_info, kind_of, kind_of_records


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_engine_provides_the_contract(name):
    info = kind_info(name)
    module = engine(info)
    missing = [n for n in api.ENGINE if not hasattr(module, n)]
    missing += [f"export.{n}" for n in api.EXPORT if not hasattr(module.export, n)]
    missing += [f"flags.{n}" for n in api.FLAGS if not hasattr(module.flags, n)]
    if not info.allocates_from_profile:
        missing += [f"flags.{n}" for n in api.PROFILE_FLAGS if not hasattr(module.flags, n)]
    assert missing == [], f"kind {name} lacks {missing}"


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_has_its_dashboard_parts(name):
    from ui.kinds import for_kind

    info = kind_info(name)
    module = for_kind(info)
    wanted = list(api.UI) + ([] if info.trains_baseline else list(api.UI_LOADED_MODEL))
    assert [n for n in wanted if not hasattr(module, n)] == []


def test_the_contract_test_fails_on_a_kind_that_lacks_a_part(monkeypatch):
    module = engine("classifier")
    monkeypatch.delattr(module, "retime")
    with pytest.raises(AssertionError, match="retime"):
        test_every_kind_engine_provides_the_contract("classifier")


def test_kinds_are_found_by_record_scenario_and_name():
    assert kind_of({}).name == "classifier"  # records written before records named their kind
    assert kind_of({"kind": "llm"}).quality_metric == "perplexity"
    assert kind_for_scenario("llm").name == "llm" and kind_for_scenario("digits").name == "classifier"
    assert kind_of_records([{"kind": "llm"}, {"kind": "llm"}]).name == "llm"
    with pytest.raises(GeminiError, match="several kinds"):
        kind_of_records([{"kind": "llm"}, {}])
    with pytest.raises(GeminiError, match="unknown model kind 'tabular-gbm'"):
        kind_of({"kind": "tabular-gbm"})


def test_reading_the_kinds_loads_no_torch():
    code = ("import sys, gemini_core.kinds.registry as r, ui.kinds; "
            "[(i.label, i.quality_metric, i.config_columns({})) for i in r.KINDS.values()]; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
