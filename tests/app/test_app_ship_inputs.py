"""The ship panel's boxes mean what they show: an empty box is no bound (never 0, never a hidden default),
switching the quality rule starts its number again, a zero bound is refused in words, a button resets."""
from __future__ import annotations

try:
    from tests.app.test_app_support import app_env, new_app  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, new_app  # noqa: F401

from gemini_core.results.store import Store
from tests.fixed_run import EXPECTED_LOSS_1_LABEL, write_fixed_run


def test_an_emptied_loss_box_is_no_quality_bound():
    ids = write_fixed_run(Store())
    at = new_app()
    box = at.text_input(key="home_ship_acc")
    assert box.value == "1"  # the untouched loss bound: the metric's default tolerance, shown
    assert at.success[0].value.startswith(f"Ship point #{ids[EXPECTED_LOSS_1_LABEL]} ")
    box.input("").run()
    assert at.text_input(key="home_ship_acc").value == ""  # stays empty, not back to 1 or 0
    # no quality bound: the most accurate point that is not slower than dense fp32
    assert at.success[0].value.startswith(f"Ship point #{ids['dense fp32']} ")
    assert "No bound is set" in at.success[0].value and "most accurate" in at.success[0].value


def test_switching_the_rule_does_not_keep_a_loss_as_an_accuracy():
    write_fixed_run(Store())
    at = new_app()
    at.text_input(key="home_ship_acc").input("2").run()
    at.radio(key="home_ship_rule").set_value("min").run()
    assert at.text_input(key="home_ship_acc").value == ""  # not "accuracy >= 2%"
    assert "accuracy ≥ 2%" not in at.success[0].value


def test_a_zero_latency_bound_is_said_not_silently_ignored_and_reset_puts_the_defaults_back():
    ids = write_fixed_run(Store())
    at = new_app()
    at.text_input(key="home_ship_lat").input("0").run()
    assert at.error and "above 0" in at.error[0].value
    at.text_input(key="home_ship_acc").input("20").run()
    at.button(key="home_ship_reset").click().run()
    assert at.text_input(key="home_ship_lat").value == "" and at.text_input(key="home_ship_acc").value == "1"
    assert at.success[0].value.startswith(f"Ship point #{ids[EXPECTED_LOSS_1_LABEL]} ")


def _spurious_change_after_the_page_left():
    import streamlit as st

    from ui import explore

    explore.choices()["acc"] = 0.5  # the bound the person set on the Overview
    explore.choices()["rule"] = "loss"
    st.session_state.pop("home_ship_acc", None)  # the Overview's box is gone: another page is shown
    explore._set("acc", "home_ship_acc")()  # a change event Streamlit delivers without an interaction
    explore._set("rule", "home_ship_rule")()
    st.markdown(f"bound {explore.choices()['acc']!r} rule {explore.choices()['rule']!r}")


def test_a_change_event_from_a_box_no_longer_shown_keeps_the_bound(app_env):
    """A browser walk lost the Overview's bound on the way to the Report (which then shipped under none): a late
    change event from the gone box emptied it. Only a shown box's change may change a bound."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_spurious_change_after_the_page_left).run()
    assert not at.exception, at.exception
    assert at.markdown[0].value == "bound 0.5 rule 'loss'"


def test_export_marks_the_recommendation_under_the_overviews_bounds(app_env):
    """Overview, Report and Export name one point for one set of bounds (Export used the default bounds)."""
    ids = write_fixed_run(Store())
    at = new_app()
    at.text_input(key="home_ship_acc").input("0.2").run()  # only the 8-bit point loses at most 0.2 points
    assert at.success[0].value.startswith(f"Ship point #{ids['8-bit']} ")
    at.switch_page("pages/4_Export.py").run()
    assert not at.exception, at.exception
    marked = [o for o in at.selectbox(key="x_point").options if "recommended" in o]
    assert len(marked) == 1 and f"#{ids['8-bit']} " in marked[0], marked
    assert f"Recommended under the Overview's bounds (accuracy loss ≤ 0.2 points): #{ids['8-bit']}," in "".join(
        c.value for c in at.caption)
    at.switch_page("pages/5_Report.py").run()
    marked = [o for o in at.selectbox(key="r_point").options if "recommended" in o]
    assert len(marked) == 1 and f"#{ids['8-bit']} " in marked[0], marked
    # the Report says which bounds its recommendation used, in the Overview's words
    said = [c.value for c in at.caption if c.value.startswith("Recommended under the Overview's bounds")]
    assert said == [f"Recommended under the Overview's bounds (accuracy loss ≤ 0.2 points): #{ids['8-bit']}, "
                    "marked “· recommended” below."], [c.value for c in at.caption]


def _late_zoom_reports():
    import streamlit as st

    from ui import explore

    st.session_state["home_acc_zoom"] = (88.0, 100.0)  # an automatic range the page showed while points arrived
    zoom = explore._set("zoom", "home_acc_zoom", echoes=((88, 100), (89, 100)))
    zoom()
    echoed = explore.choices()["zoom"]
    st.session_state["home_acc_zoom"] = (90.0, 100.0)  # the person's own zoom
    zoom()
    st.markdown(f"zoom {echoed!r} then {explore.choices()['zoom']!r}")


def test_the_zoom_sliders_report_of_an_automatic_range_is_not_a_choice(app_env):
    """While the demo ran, the browser reported the automatic ranges back, which then stayed as if chosen."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_late_zoom_reports).run()
    assert not at.exception, at.exception
    assert at.markdown[0].value == "zoom None then (90.0, 100.0)"


def test_bounds_are_typed_text_that_survives_leaving_the_page():
    """A focused number box sent an empty value when the person went to another page (2 of 3 browser walks: the
    loss bound just typed was emptied, and Export and Report recommended under none). The bounds are text boxes,
    which send nothing then; what is typed is read as a number, and anything else is one line that keeps the
    bound."""
    ids = write_fixed_run(Store())
    at = new_app()
    assert not at.number_input  # no number box on the Overview's panel
    at.text_input(key="home_ship_acc").input(" 0,2 ").run()  # a decimal comma and spaces are fine
    assert at.success[0].value.startswith(f"Ship point #{ids['8-bit']} ")
    at.text_input(key="home_ship_acc").input("half a point").run()
    assert [e.value for e in at.error] == ["The quality bound 'half a point' is not a number of 0 or more: it stays "
                                           "as it was (empty the box for no bound)."]
    assert at.text_input(key="home_ship_acc").value == "0.2"
    assert at.success[0].value.startswith(f"Ship point #{ids['8-bit']} ")
    at.radio(key="home_ship_rule").set_value("min").run()
    at.text_input(key="home_ship_acc").input("120").run()
    assert at.error and "cannot be reached" in at.error[0].value
