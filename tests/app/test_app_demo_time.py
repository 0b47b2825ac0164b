"""The Overview's demo on a fresh home: its first point without training (the digits baseline ships and is
checked), and a status line that never multiplies the start-up. How soon the first point comes is measured by
tests/e2e/measure_demo.py, not asserted here: a timed test fails on a busy machine, not on slow code."""
import shutil
import time

try:
    from tests.app.test_app_support import _registry, app_env, new_app, wait_job  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import _registry, app_env, new_app, wait_job  # noqa: F401


def test_demo_on_a_fresh_home_shows_its_first_point_without_training(app_env):
    shutil.rmtree(app_env / "baselines")  # a fresh home: no baseline cached
    at = new_app()
    assert any("ships with gemini" in c.value for c in at.caption)  # the estimate knows no training is due
    clicked = time.time()
    at.button(key="demo_start").click().run()
    job = wait_job(at, "sweep", timeout=120, until=lambda j: len(j.records) >= 1)
    first = job.first_record_at - clicked
    kinds = {e.get("event") for e in job.events}
    assert "step" not in kinds and "shipped" in kinds, kinds  # no training before the first point
    assert job.baseline_info["origin"] == "shipped"
    print(f"first point {first:.1f} s after the click")  # shown with -s; the figure comes from measure_demo.py
    # the status line: no "s left" multiplied from the start-up while only one point exists
    status = at.progress[0].proto.text if at.progress else ""
    assert len(job.records) >= 2 or "s left" not in status, status
    job.cancel()
    job.join(60)
    at.run()
    assert job.state == "cancelled"
    from gemini_core.results.store import Store

    assert Store().get_run(job.run_id)["status"] == "cancelled"
    # the Model page says where the sweep's baseline came from (the sidebar shows its accuracy), not "not yet"
    at.switch_page("pages/1_Model.py").run()
    said = " ".join(i.value for i in at.info)
    assert "loaded by the sweep: shipped with gemini" in said and "n = " in said, said
