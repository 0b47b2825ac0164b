"""The dashboard with a recommender run that has library peers: the Report shows them next to the product's points
(a table and a "library peer" trace), never offers one as the chosen point; Export refuses one; the Sweep form asks
for peers."""
import pytest

try:
    from tests.app.test_app_support import app_env, chart_by_title, media_mgr, new_app  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, chart_by_title, media_mgr, new_app  # noqa: F401

from tests.engine.test_recommend_engine import SCENARIO_OPTIONS, write_log

PEER = "implicit ALS (library)"


def _peer_sweep(folder) -> list:
    pytest.importorskip("implicit")
    from gemini_core.kinds.recommend.measure import RecommendMeasureSettings
    from gemini_core.kinds.recommend.points import RecommendSweepSpec
    from gemini_core.kinds.recommend.train import RecommendTrainSettings
    from gemini_core.scenarios import get_scenario
    from gemini_core.workflows.sweep import run_sweep

    options = {"data": str(write_log(folder / "log.csv")), **SCENARIO_OPTIONS}
    spec = RecommendSweepSpec(bits=(32, 4), recovery_steps=0, peers=("implicit-als",), peer_grid=1,
                              train=RecommendTrainSettings(model="mf", dim=8, epochs=6, patience=0, lr=0.05),
                              measure=RecommendMeasureSettings(repeats=3, warmup=1, batch_users=4))
    records = list(run_sweep(get_scenario("recommend", **options), spec))
    assert [r["status"] for r in records] == ["ok"] * 3 and records[-1]["peer"] == PEER
    return records, options


def test_the_report_shows_the_peers_beside_the_points_and_never_chooses_one(tmp_path, media_mgr):
    records, _ = _peer_sweep(tmp_path)
    peer_id = records[-1]["point_id"]
    at = new_app()
    at.session_state["selected_point_id"] = peer_id  # chosen elsewhere: the Report still picks a product point
    at.switch_page("pages/5_Report.py").run()
    assert not at.exception, at.exception
    assert peer_id not in at.selectbox(key="r_point").options and at.selectbox(key="r_point").value != peer_id
    assert any(s.value == "Library peers (same split, not shippable)" for s in at.subheader)
    table = next(t.value for t in at.table if PEER in t.value.index)  # a static table: every column shown
    assert "product: reference" in table.index
    assert {"size", "NDCG@10 (%), 95% interval", "scoring p50 of 1,000 candidates (ms)"} <= set(table.columns)
    front = chart_by_title(at, "chosen point starred")
    peers = [t for t in front["data"] if t["name"] == "library peer"]
    assert len(peers) == 1 and peers[0]["text"] == ["implicit ALS"]
    page = media_mgr(at.download_button(key="r_html")).decode()
    assert "Library peers (same split, not shippable)" in page and PEER in page


def test_export_refuses_a_peer_chosen_elsewhere(tmp_path):
    records, options = _peer_sweep(tmp_path)
    at = new_app()
    at.session_state["model"] = {"scenario": "recommend", "options": options, "train": None, "adaptive": None}
    at.session_state["selected_point_id"] = records[-1]["point_id"]
    at.switch_page("pages/4_Export.py").run()
    assert not at.exception, at.exception
    assert at.radio(key="x_source").value.startswith("the point chosen")
    assert any("library peer" in w.value and "cannot be exported" in w.value for w in at.warning), \
        [w.value for w in at.warning]
    assert not any(b.key == "x_export" for b in at.button)
    # picked from the history instead, the run's points are offered, its peer is not
    at.radio(key="x_source").set_value("a point from the history").run()
    assert not at.exception, at.exception
    offered = at.selectbox(key="x_point").options
    assert len(offered) == 2 and not any("peer" in str(o) for o in offered)


def test_the_sweep_form_asks_for_peers_and_plans_them():
    pytest.importorskip("implicit")
    pytest.importorskip("torchrec")
    at = new_app()
    at.session_state["model"] = {"scenario": "recommend", "options": {}, "train": None, "adaptive": None}
    at.switch_page("pages/2_Sweep.py").run()
    assert not at.exception, at.exception
    assert at.multiselect(key="rec_peers").value == []  # off by default: the optional extra may be missing
    before = at.info[0].value
    at.multiselect(key="rec_peers").set_value(["implicit-als", "torchrec-int8"]).run()
    assert not at.exception, at.exception
    assert "2 library peers" in at.info[0].value and at.info[0].value != before
    assert not at.button(key="sw_start").disabled
