"""The explorer on Overview and Sweep: recommendation under constraints, encodings, per-chart front, zoom,
full record, comparison, parallel coordinates, choices kept in the query string."""
from __future__ import annotations

import pandas as pd

try:
    from tests.app.test_app_support import app_env, chart_by_title, new_app  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, chart_by_title, new_app  # noqa: F401
from streamlit.testing.v1 import AppTest

from gemini_core.paths import store_path
from gemini_core.results.store import Store
from tests.app.test_app_support import APP
from tests.fixed_run import EXPECTED_LOSS_1_LABEL, write_fixed_run


def _fixed():
    return write_fixed_run(Store(store_path()))


def _traces(spec, name):
    return [t for t in spec["data"] if t.get("name") == name]


def test_overview_recommends_and_stars_the_right_point():
    ids = _fixed()
    at = new_app()
    want = ids[EXPECTED_LOSS_1_LABEL]
    assert at.success and at.success[0].value.startswith(f"Ship point #{want} ")
    assert "largest size × speed gain" in at.success[0].value
    chart = chart_by_title(at, "Accuracy vs latency")
    star = _traces(chart, "recommended")
    assert star and star[0]["customdata"][0][0] == want
    # the chart's own front: the sparse point is beaten by "8-bit" on accuracy AND latency, so not ringed
    ring = _traces(chart, "Pareto front")[0]
    sparse = [t for t in chart["data"] if "sparse" in t["name"]][0]
    assert sparse["x"][0] not in ring["x"]
    # a hover card of five lines
    assert chart["data"][1]["hovertemplate"].count("<br>") == 4


def test_bounds_change_the_answer_and_survive_a_reload():
    ids = _fixed()
    at = new_app()
    at.text_input(key="home_ship_lat").input("0.5").run()
    assert not at.exception
    assert at.warning and "No point meets" in at.warning[0].value and "latency p50 ≤ 0.5 ms" in at.warning[0].value
    at.radio(key="home_ship_rule").set_value("min").run()
    at.text_input(key="home_ship_acc").input("95").run()
    assert at.success[0].value.startswith(f"Ship point #{ids['l1 0.5 · 8-bit']} ")
    assert at.query_params["ship_lat"] == ["0.5"] or at.query_params["ship_lat"] == "0.5"
    # a reload is a new session that only has the address: the query string brings the bounds back
    fresh = AppTest.from_file(APP, default_timeout=60)
    for k, v in at.query_params.items():
        fresh.query_params[k] = v[0] if isinstance(v, list) else v
    fresh.run()
    assert fresh.text_input(key="home_ship_lat").value == "0.5"
    assert fresh.success[0].value.startswith(f"Ship point #{ids['l1 0.5 · 8-bit']} ")


def test_colour_zoom_record_compare_and_parallel_on_the_sweep_page():
    ids = _fixed()
    at = new_app("pages/2_Sweep.py")
    at.selectbox(key="sweep_ship_color").set_value("prune_ratio").run()
    names = [t["name"] for t in chart_by_title(at, "Accuracy vs size")["data"]]
    assert "ratio 0.25 · dense" in names and "ratio 0.25 · sparse" in names
    assert at.slider(key="sweep_acc_zoom").value == (87.0, 100.0)   # 10 points below the best, floored
    at.slider(key="sweep_acc_zoom").set_value((0.0, 100.0)).run()
    assert chart_by_title(at, "Accuracy vs latency")["layout"]["yaxis"]["range"] == [0.0, 100.0]
    at.session_state["selected_point_id"] = ids["8-bit"]
    at.run()
    assert not [d for d in at.dataframe if "figure" in d.value.columns]  # a static table: every row shows
    record = pd.concat([t.value for t in at.table if "figure" in t.value.columns])
    values = dict(zip(record["figure"], record["value"]))
    assert values["accuracy (%)"] == "96.90" and values["bits"] == "8" and "None" not in values.values()
    at.multiselect(key="sweep_compare").set_value([ids["dense fp32"], ids["8-bit"]]).run()
    compared = [d.value for d in at.dataframe if f"#{ids['8-bit']}" in d.value.columns][0]
    assert list(compared.columns) == [f"#{ids['dense fp32']}", f"#{ids['8-bit']}"]
    assert any("Parallel coordinates" in e.label for e in at.expander)
