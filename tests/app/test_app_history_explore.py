"""History opens a past run (charts, table, recommendation), re-runs its settings; the Sweep form takes typed
ratios and recipe files."""
from __future__ import annotations

import json

try:
    from tests.app.test_app_support import app_env, new_app  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, new_app  # noqa: F401

from gemini_core.paths import store_path
from gemini_core.results.store import Store
from tests.fixed_run import EXPECTED_LOSS_1_LABEL, RUN_ID, write_fixed_run
from ui import recipes


def test_history_opens_a_past_run_and_keeps_it_in_the_address():
    ids = write_fixed_run(Store(store_path()))
    at = new_app("pages/3_History.py")
    at.selectbox(key="h_open").set_value(RUN_ID).run()
    assert not at.exception, at.exception
    assert at.query_params["run"] in (RUN_ID, [RUN_ID])
    assert at.success[0].value.startswith(f"Ship point #{ids[EXPECTED_LOSS_1_LABEL]} ")
    titles = {json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")}
    assert {"Accuracy vs latency", "Accuracy vs size", "Sparse vs dense execution"} <= titles
    assert any(len(d.value) == 7 for d in at.dataframe)        # the points table of the run


def test_rerun_settings_fill_the_sweep_form():
    write_fixed_run(Store(store_path()))
    at = new_app("pages/3_History.py")
    at.selectbox(key="h_open").set_value(RUN_ID).run()
    at.button(key="h_rerun").click().run()
    assert not at.exception, at.exception
    assert at.session_state["sw_ratios"] == [0.0, 0.25, 0.5, 0.75]
    assert at.session_state["sw_bits"] == [32, 8, 4, 2]
    assert at.session_state["sw_name"].endswith("(again)")


def test_typed_ratios_and_a_bad_one():
    at = new_app("pages/2_Sweep.py")
    at.text_input(key="sw_custom_ratios").input("0.35, 0.65").run()
    assert not at.exception
    assert 0.35 in at.session_state["sw_ratios"] and "0.65" in at.multiselect(key="sw_ratios").options
    at.text_input(key="sw_custom_ratios").input("0.3, lots").run()
    assert at.error and "lots" in at.error[0].value


def test_recipe_round_trip_json_and_yaml_and_bad_files():
    state = {"sw_methods": ["l1-structured"], "sw_ratios": [0.0, 0.35], "sw_bits": [32, 4], "sw_gran": ["per-channel"],
             "sw_exec": ["dense"], "sw_ft": [20], "sw_batch": 16, "sw_name": "mine"}
    recipe = recipes.recipe_from_form(state, "digits")
    for fmt in ("json", "yaml"):
        values = recipes.parse(recipes.dump(recipe, fmt), f"r.{fmt}")
        assert values == state
    import pytest

    from gemini_core.errors import ConfigError
    with pytest.raises(ConfigError, match="not a sweep recipe"):
        recipes.parse(b'{"spec": {}}', "x.json")
    with pytest.raises(ConfigError, match="not a JSON or YAML"):
        recipes.parse(b"\xff\xfe", "x.json")
    bad = dict(recipe, spec=dict(recipe["spec"], prune_ratios=[2.0]))
    with pytest.raises(ConfigError):
        recipes.parse(recipes.dump(bad, "json"), "x.json")
    with pytest.raises(ConfigError, match="unknown sweep setting"):
        recipes.parse(recipes.dump(dict(recipe, spec={"evil": 1}), "json"), "x.json")
