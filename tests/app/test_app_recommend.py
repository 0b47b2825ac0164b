"""The dashboard with the recommender: the Model page's section, the Sweep page running the demo grid on the
SYNTHETIC demo and drawing its points by NDCG@10, a recipe round trip, the Sensitivity page's per-table
profile and the Export page's reload check. Engine-side sweeps use a tiny log (50 users x 120 items)."""
import json

import pytest

try:
    from tests.app.test_app_support import (  # noqa: F401
        app_env,
        chart_by_title,
        media_mgr,
        new_app,
        point_count,
        wait_job,
    )
except ImportError:  # pragma: no cover
    from test_app_support import app_env, chart_by_title, media_mgr, new_app, point_count, wait_job  # noqa: F401,E501

from tests.engine.test_recommend_engine import SCENARIO_OPTIONS, write_log

PAGE = "pages/2_Sweep.py"


def _recommend_app(page, options=None):
    at = new_app()
    at.session_state["model"] = {"scenario": "recommend", "options": options or {}, "train": None, "adaptive": None}
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _tiny_sweep(folder) -> list:
    from gemini_core.kinds.recommend.measure import RecommendMeasureSettings
    from gemini_core.kinds.recommend.points import RecommendSweepSpec
    from gemini_core.kinds.recommend.train import RecommendTrainSettings
    from gemini_core.scenarios import get_scenario
    from gemini_core.workflows.sweep import run_sweep

    options = {"data": str(write_log(folder / "log.csv")), **SCENARIO_OPTIONS}
    spec = RecommendSweepSpec(bits=(8, 4), recovery_steps=0,
                              train=RecommendTrainSettings(model="mf", dim=8, epochs=6, patience=0, lr=0.05),
                              measure=RecommendMeasureSettings(repeats=3, warmup=1, batch_users=4))
    records = list(run_sweep(get_scenario("recommend", **options), spec))
    assert [r["status"] for r in records] == ["ok"] * 3
    return records, options


def test_model_page_offers_the_demo_and_an_interaction_file(tmp_path):
    at = new_app("pages/1_Model.py")
    at.selectbox(key="m_scenario").set_value("recommend").run()
    assert not at.exception, at.exception
    assert any("No separate training step" in c.value for c in at.caption)
    assert at.button(key="m_train").disabled and not at.button(key="m_use").disabled
    at.radio(key="m_rec_source").set_value("my interaction file (CSV / TSV)").run()
    assert at.button(key="m_use").disabled  # no file yet
    log = write_log(tmp_path / "log.csv")
    at.text_input(key="m_rec_data").set_value(str(log)).run()
    at.text_input(key="m_rec_user").set_value("user").run()
    at.text_input(key="m_rec_item").set_value("item").run()
    at.text_input(key="m_rec_time").set_value("time").run()
    assert not at.exception, at.exception
    at.button(key="m_use").click().run()
    assert at.session_state["model"]["options"] == {"data": str(log), **SCENARIO_OPTIONS}


def test_sweep_page_runs_the_demo_grid_and_draws_ndcg():
    at = _recommend_app(PAGE)
    assert at.selectbox(key="rec_model").value == "mf" and "points**" in at.info[0].value
    at.button(key="sw_fill_demo").click().run()
    assert at.multiselect(key="rec_qr").value == [4] and at.multiselect(key="rec_hot").value == [0.2]
    at.button(key="sw_demo").click().run()
    assert not at.exception, at.exception
    job = wait_job(at, "sweep", timeout=300)
    assert job.state == "done", job.snapshot()
    from ui.kinds.recommend import demo_spec

    assert len(job.records) == demo_spec().n_points()
    assert all(r["status"] == "ok" and r["kind"] == "recommend" for r in job.records)
    chart = chart_by_title(at, "NDCG@10 vs scoring latency")
    assert point_count(chart) == demo_spec().n_points()
    assert chart["layout"]["yaxis"]["title"]["text"].startswith("NDCG@10")


def test_the_grid_form_refuses_what_the_model_cannot_take_and_recipes_round_trip():
    from gemini_core.errors import ConfigError
    from ui import recipes

    at = _recommend_app(PAGE)
    at.selectbox(key="rec_model").set_value("two-tower").run()
    at.multiselect(key="rec_tower").set_value([0.5]).run()
    assert "**" in at.info[0].value and not at.button(key="sw_start").disabled
    state = {"rec_bits": [32, 4], "rec_hot": [0.1], "rec_rows": [0.25], "rec_dims": [], "rec_rank": [4],
             "rec_qr": [], "rec_tower": [0.5], "rec_steps": 20, "rec_model": "two-tower", "rec_dim": 16,
             "rec_hidden": 32, "rec_epochs": 5, "rec_peers": [], "sw_name": "mine"}
    recipe = recipes.recipe_from_form(state, "recommend")
    assert recipe["spec"]["kind"] == "recommend" and recipe["spec"]["train"]["model"] == "two-tower"
    for fmt in ("json", "yaml"):
        assert recipes.parse(recipes.dump(recipe, fmt), f"r.{fmt}", "recommend") == state
    with pytest.raises(ConfigError, match="is a recommender sweep; choose a recommender"):
        recipes.parse(recipes.dump(recipe, "json"), "r.json", "digits")
    bad = dict(recipe, spec=dict(recipe["spec"], ranks=[5]))
    with pytest.raises(ConfigError, match="ranks 5 is not offered"):
        recipes.parse(recipes.dump(bad, "json"), "x.json", "recommend")
    hidden = dict(recipe, spec=dict(recipe["spec"], train={**recipe["spec"]["train"], "lr": 0.5}))
    with pytest.raises(ConfigError, match="lr are not in the dashboard's form"):
        recipes.parse(json.dumps(hidden).encode(), "x.json", "recommend")


def test_sensitivity_page_profiles_each_table():
    at = _recommend_app("pages/6_Sensitivity.py")
    at.multiselect(key="sn_rec_bits").set_value([4, 2]).run()
    at.number_input(key="sn_rec_dim").set_value(8).run()
    at.number_input(key="sn_rec_epochs").set_value(3).run()
    at.button(key="sn_start").click().run()
    assert not at.exception, at.exception
    job = wait_job(at, "sensitivity", timeout=240)
    assert job.state == "done", job.snapshot()
    heat = chart_by_title(at, "Quantizing one embedding table at a time (ROW-WISE): NDCG@10 loss (points)")
    assert heat["data"][0]["y"] == ["user_embedding", "item_embedding"]
    assert any("Keep at higher precision" in s.value for s in at.success)


def test_export_page_exports_a_recommender_point_and_reproduces_it(tmp_path):
    records, options = _tiny_sweep(tmp_path)
    point = next(r for r in records if r["label"] == "int4 rows")
    at = new_app()
    # the point of a run of the current model: another model's point is not offered as the chosen one
    at.session_state["model"] = {"scenario": "recommend", "options": options, "train": None, "adaptive": None}
    at.session_state["selected_point_id"] = point["point_id"]
    at.switch_page("pages/4_Export.py").run()
    assert not at.exception, at.exception
    assert {"NDCG@10", "Embedding bytes", "File (bytes written)"} <= {m.label for m in at.metric}
    at.button(key="x_export").click().run()
    job = wait_job(at, "export", timeout=240)
    assert job.state == "done", job.snapshot()
    check = job.result["check"]
    assert check["ndcg_at_10"] == point["ndcg_at_10"] and check["scorer_matches"] and check["size_matches_record"]
    assert any("NDCG@10 reproduced exactly" in s.value and "score.py gives the same scores" in s.value
               for s in at.success), [s.value for s in at.success]


def test_report_and_history_pages_word_a_recommender_run_in_ndcg(tmp_path, media_mgr):
    records, _ = _tiny_sweep(tmp_path)
    at = new_app()
    at.session_state["selected_point_id"] = records[1]["point_id"]
    at.switch_page("pages/5_Report.py").run()
    assert not at.exception, at.exception
    assert any("NDCG@10" in m.label for m in at.metric), [m.label for m in at.metric]
    page = media_mgr(at.download_button(key="r_html")).decode()
    assert "NDCG@10" in page and "test accuracy [95% Wilson interval]" not in page
    at.switch_page("pages/3_History.py").run()
    assert not at.exception, at.exception
