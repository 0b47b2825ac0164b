"""Sweep page: grid widgets, size + estimate, a real 4-point sweep polled to the end, charts, table, pick."""
import numpy as np
import pytest

try:
    from tests.app.test_app_support import (  # noqa: F401
        SMALL_GRID,
        _registry,
        app_env,
        chart_by_title,
        new_app,
        point_count,
        wait_job,
    )
except ImportError:  # pragma: no cover
    from test_app_support import SMALL_GRID, _registry, app_env, chart_by_title, new_app, point_count, wait_job  # noqa

PAGE = "pages/2_Sweep.py"


def set_grid(at, grid=SMALL_GRID):
    for key, value in grid.items():
        at.multiselect(key=key).set_value(value)
    at.run()
    assert not at.exception, at.exception


def test_grid_size_estimate_and_validation():
    at = new_app(PAGE)
    assert at.title[0].value == "Sweep"
    set_grid(at)
    info = at.info[0].value
    assert "**5 points**" in info and "estimate" in info  # 4 + the control (unpruned, same fine-tuning)
    assert not at.button(key="sw_start").disabled
    at.multiselect(key="sw_bits").set_value([]).run()
    assert "no bits chosen" in at.error[0].value           # the engine's message, no traceback
    assert at.button(key="sw_start").disabled
    at.button(key="sw_fill_demo").click().run()             # demo grid preset: 32 points + the control
    assert "**33 points**" in at.info[0].value
    assert at.multiselect(key="sw_exec").value == ["dense", "sparse"]


def test_small_sweep_runs_in_background_and_fills_charts():
    at = new_app(PAGE)
    set_grid(at)
    at.text_input(key="sw_name").set_value("ui test sweep").run()
    at.button(key="sw_start").click().run()
    assert not at.exception, at.exception
    assert at.button(key="sw_start").disabled and not at.button(key="sw_cancel").disabled
    job = wait_job(at, "sweep", timeout=180)
    assert job.state == "done", job.snapshot()
    assert len(job.records) == 5 and all(r["status"] == "ok" for r in job.records)
    assert "finished, 5 points" in at.success[0].value
    assert not at.button(key="sw_start").disabled           # re-enabled after the final rerun

    acc_lat = chart_by_title(at, "Accuracy vs latency")
    assert point_count(acc_lat) == 5
    names = [t["name"] for t in acc_lat["data"]]
    assert names[0] == "Pareto front" and "32-bit · dense" in names and "8-bit · dense" in names
    ys = np.concatenate([np.asarray(t["y"], dtype=float) for t in acc_lat["data"][1:]])
    assert ((ys > 50) & (ys <= 100)).all()                   # accuracy in percent
    hover = acc_lat["data"][1]["hovertemplate"]
    card = acc_lat["data"][1]["customdata"][0]      # a short card: the point id, then five lines
    assert hover.count("<br>") == 4 and len(card) == 6 and "latency p50" in card[3]
    size = chart_by_title(at, "Accuracy vs size")
    assert size["layout"]["xaxis"]["type"] == "log" and point_count(size) == 5
    chart_by_title(at, "Latency and size vs prune ratio")
    chart_by_title(at, "Sparse vs dense execution")

    compact = at.dataframe[0].value
    assert "MACs (estimate)" not in compact.columns and set(compact["front"]) <= {"★", ""}  # fits the page
    at.toggle(key="sweep_table_all_columns").set_value(True).run()
    table = at.dataframe[0].value
    assert len(table) == 5
    assert {"speed-up vs dense fp32 (x)", "MACs (estimate)", "ideal size (KB, estimate)"} <= set(table.columns)
    ref = table[table["configuration"] == "unpruned / 32-bit / dense"]
    assert float(ref["speed-up vs dense fp32 (x)"].iloc[0]) == 1.0

    # the run is in the store, named
    from gemini_core.results.store import Store
    runs = Store().runs()
    assert [r["name"] for r in runs] == ["ui test sweep"] and runs[0]["points_ok"] == 5

    pick = at.selectbox(key="sweep_pick")
    pid = pick.options[1]
    pick.set_value(int(pid.split("#")[1].split(" ")[0]) if isinstance(pid, str) else pid).run()
    assert at.session_state["selected_point_id"] == at.selectbox(key="sweep_pick").value
    assert any("Export point" in str(el.proto) for el in at.get("page_link"))


def test_cancel_keeps_finished_points_and_reload_reattaches():
    at = new_app(PAGE)
    at.button(key="sw_demo").click().run()                  # 32-point demo grid
    job = wait_job(at, "sweep", timeout=120, until=lambda j: len(j.records) >= 1)
    # a second browser session (a reload) finds the same running job
    other = new_app(PAGE)
    assert other.session_state["sweep_job_id"] == job.id
    assert other.button(key="sw_start").disabled
    at.button(key="sw_cancel").click().run()
    job.join(60)
    at.run()
    assert job.state == "cancelled"
    assert "cancelled" in at.warning[0].value
    from gemini_core.results.store import Store
    run = Store().runs()[0]
    assert run["status"] == "cancelled" and run["points_ok"] == len(job.records) >= 1


def test_time_estimate_counts_qat_recoveries():
    from gemini_core.kinds.classifier.spec import SweepSpec
    from ui.sweep_plan import estimate_seconds

    plain = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.5,), bits=(8, 4), finetune_steps=(60,))
    both = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.5,), bits=(8, 4), finetune_steps=(60,),
                     recoveries=("finetune", "qat"))
    assert len(both.qat_settings()) == 2  # QAT recovers the 50%-pruned model once per bit width
    extra_points = both.n_points() - plain.n_points()
    per_point, per_setting = 0.6, 0.5
    assert estimate_seconds(both, "digits") == pytest.approx(
        estimate_seconds(plain, "digits") + extra_points * per_point + 2 * per_setting)
