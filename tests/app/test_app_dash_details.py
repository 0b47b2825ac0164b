"""Small things that must say what happened: a re-run whose points were all reused says so and offers to
measure again; the comparison says it takes at most four points."""
from __future__ import annotations

try:
    from tests.app.test_app_support import SMALL_GRID, app_env, new_app, wait_job  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import SMALL_GRID, app_env, new_app, wait_job  # noqa: F401

from gemini_core.results.store import Store
from tests.fixed_run import write_fixed_run


def _set_grid(at) -> None:
    for key, value in SMALL_GRID.items():
        at.multiselect(key=key).set_value(value)
    at.run()
    assert not at.exception, at.exception


def test_a_rerun_of_measured_settings_says_nothing_was_measured_and_can_measure_again():
    at = new_app("pages/2_Sweep.py")
    _set_grid(at)
    at.button(key="sw_start").click().run()
    first = wait_job(at, "sweep", timeout=240)
    assert first.state == "done" and not any(r.get("reused") for r in first.records)
    at.button(key="sw_start").click().run()  # the same settings again, as History's "Re-run these settings"
    job = wait_job(at, "sweep", timeout=120)
    assert job is not first and job.state == "done" and all(r.get("reused") for r in job.records)
    said = " ".join(i.value for i in at.info)
    assert "already measured" in said and "reused, not measured again" in said and "Measure again" in said
    assert not any("finished" in s.value for s in at.success)  # not "5 points in 0.4 s" as if measured
    at.checkbox(key="sw_force").check().run()
    at.button(key="sw_start").click().run()
    job = wait_job(at, "sweep", timeout=240)
    assert job.state == "done" and job.force and not any(r.get("reused") for r in job.records)
    assert any("finished" in s.value for s in at.success)


def test_compare_says_it_takes_at_most_four_points():
    ids = write_fixed_run(Store())
    at = new_app("pages/2_Sweep.py")
    chosen = sorted(ids.values())[:4]
    at.multiselect(key="sweep_compare").set_value(chosen).run()
    assert not at.exception, at.exception
    assert any("at most four" in c.value for c in at.caption)


def test_no_page_uses_the_deprecated_use_container_width():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = [root / "app.py", *(root / "pages").glob("*.py"), *(root / "ui").rglob("*.py")]
    using = [str(f.relative_to(root)) for f in files if "use_container_width" in f.read_text(encoding="utf-8")]
    assert not using, f"use width='stretch' instead (Streamlit deprecates use_container_width): {using}"


def test_a_training_step_is_named_once_in_the_progress_line():
    from streamlit.testing.v1 import AppTest

    def page():
        from ui.views import job_status

        job_status({"state": "running", "total": 33, "records": [], "elapsed": 10.0, "title": "demo",
                    "message": "training the baseline: epoch 2, step 77/800, loss 0.412",
                    "events": [{"event": "step", "step": 77, "total_steps": 800}]})

    at = AppTest.from_function(page).run()
    text = at.get("progress")[0].proto.text
    assert text.count("77/800") == 1 and "s left (estimate)" in text, text


def test_an_unchanged_accuracy_on_export_is_grey_not_green():
    ids = write_fixed_run(Store())
    at = new_app("pages/4_Export.py")
    at.selectbox(key="x_point").set_value(ids["dense fp32"]).run()
    assert not at.exception, at.exception
    accuracy = next(m for m in at.metric if m.label == "Accuracy")
    assert accuracy.delta == "+0.00 pts" and accuracy.proto.color == accuracy.proto.MetricColor.GRAY
    at.selectbox(key="x_point").set_value(ids["l1 0.5 · 4-bit"]).run()  # 7 points lost: red
    accuracy = next(m for m in at.metric if m.label == "Accuracy")
    assert accuracy.proto.color == accuracy.proto.MetricColor.RED
