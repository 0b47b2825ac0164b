"""Overview (first page): no config needed, sidebar facts, the demo sweep button streams points."""
import re

try:
    from tests.app.test_app_support import (  # noqa: F401
        _registry,
        app_env,
        chart_by_title,
        new_app,
        point_count,
        wait_job,
        wait_points,
    )
except ImportError:  # pragma: no cover
    from test_app_support import _registry, app_env, chart_by_title, new_app, point_count, wait_job, wait_points  # noqa: F401


def test_overview_opens_on_digits_with_sidebar():
    at = new_app()
    assert at.title[0].value == "Gemini Compression Studio"
    side = at.sidebar.markdown[0].value
    assert "Device" in side and "torch" in side and "digits" in side
    # CPU model, cores and the jobs' torch threads (one core left to the UI), or GPU + memory
    assert re.search(r"\d+ cores · jobs use \d+ torch thread", side) or ("GPU" in side and "GiB" in side)
    assert at.session_state["model"]["scenario"] == "digits"
    assert at.button(key="demo_start").label == "Run demo sweep"
    assert at.button(key="demo_cancel").disabled
    assert "No sweep of **digits** yet" in at.info[0].value


def test_demo_sweep_streams_points_then_cancel():
    at = new_app()
    at.button(key="demo_start").click().run()
    assert not at.exception, at.exception
    assert at.button(key="demo_start").disabled
    job = wait_job(at, "sweep", timeout=120, until=lambda j: len(j.records) >= 2)
    assert job.total == 33  # the demo grid + the control
    assert point_count(wait_points(at, "Accuracy vs latency", 2)) >= 2     # the live chart has points
    assert at.get("progress")                                                  # progress bar while running
    at.button(key="demo_cancel").click().run()
    job.join(60)
    at.run()
    assert job.state == "cancelled" and not at.button(key="demo_start").disabled


def test_busy_lane_is_reported_not_raised():
    at = new_app()
    at.button(key="demo_start").click().run()
    at.switch_page("pages/1_Model.py").run()
    assert at.button(key="m_train").disabled                               # training waits for the sweep
    at.switch_page("pages/2_Sweep.py").run()
    assert at.button(key="sw_start").disabled and at.button(key="sw_demo").disabled
    at.button(key="sw_cancel").click().run()
    _registry().latest("sweep").join(60)
