"""Present page: the current model's latest run in four answers, the recommendation the Overview shows under
its bounds, and an HTML report that opens with the same four answers."""
import html

try:
    from tests.app.test_app_support import app_env, chart_by_title, media_mgr, new_app, seed_run, seed_template, seeded  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, chart_by_title, media_mgr, new_app, seed_run, seed_template, seeded  # noqa: F401

from gemini_core.report.story import story
from gemini_core.results.store import Store
from gemini_core.results.suggest import Constraints, recommend
from gemini_core.results.table import points_frame

PAGE = "pages/0_Present.py"
QUESTIONS = ["What did we gain?", "What did it cost?", "How sure are we?", "What do we ship?"]


def _cards(at) -> list[str]:
    return [m.value for m in at.markdown if "<div class='gemini-q'>" in m.value]


def test_present_answers_four_questions_about_the_latest_run_and_the_report_says_the_same(seeded, media_mgr):
    at = new_app(PAGE)
    cards = _cards(at)
    assert [next(q for q in QUESTIONS if html.escape(q) in c) for c in cards] == QUESTIONS
    df = points_frame(Store().points(seeded[0]["run_id"]))
    rec = recommend(df)
    told = story(df)
    assert told.chosen["point_id"] == rec.point_id
    for card, answer in zip(cards, told.answers):
        assert html.escape(answer.answer) in card and html.escape(answer.detail) in card
    ship = cards[3]
    assert f"point #{rec.point_id}" in ship and "KB" in cards[0] and "ms" in cards[0] and "95% interval" in cards[2]
    front = chart_by_title(at, "chosen point starred")
    assert [t["text"] for t in front["data"] if t["name"] == "chosen point"] == [[f"chosen #{rec.point_id}"]]
    page = media_mgr(at.download_button(key="p_html")).decode()
    assert "In ten seconds" in page
    for answer in told.answers:
        assert html.escape(answer.answer) in page and html.escape(answer.detail) in page


def test_present_ships_what_the_overview_recommends_under_its_bounds(seeded):
    at = new_app()
    at.session_state["ship"] = {"rule": "loss", "acc": 0.0, "lat": None, "size": None, "color": "bits", "zoom": None}
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    df = points_frame(Store().points(seeded[0]["run_id"]))
    strict = recommend(df, Constraints(max_loss=0.0))
    ship = _cards(at)[-1]
    expected = f"point #{strict.point_id}" if strict.point_id is not None else "nothing meets the bounds"
    assert expected in ship


def test_present_without_a_run_says_what_to_press(app_env):
    at = new_app(PAGE)
    assert not at.exception
    assert any("Run demo sweep" in i.value for i in at.info)
