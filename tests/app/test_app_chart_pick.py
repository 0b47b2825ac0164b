"""Choosing a point with a chart click and with the point picker: the last action wins, in either order.

A browser sends a chart's selection again with every later rerun, whatever widget caused it. AppTest sends
only typed widgets, so ``run_with_chart`` adds the chart's selection to a run the way the browser does.
"""
from __future__ import annotations

import json

try:
    from tests.app.test_app_support import app_env, new_app  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, new_app  # noqa: F401

from gemini_core.paths import store_path
from gemini_core.results.store import Store
from tests.fixed_run import write_fixed_run


def _chart(at, key: str):
    """The selectable chart whose key starts with ``key`` (the page adds a click counter to it)."""
    charts = [el for el in at.get("plotly_chart") if (el.key or "").startswith(key)]
    assert len(charts) == 1, [el.key for el in at.get("plotly_chart")]
    return charts[0]


def _selection(point_ids: list[int]) -> str:
    """A plotly points selection as Streamlit's frontend sends it (only the fields the page reads)."""
    points = [{"customdata": [pid, f"#{pid}"], "curve_number": 1, "point_index": 0} for pid in point_ids]
    return json.dumps({"selection": {"points": points, "point_indices": [0] * len(points), "box": [], "lasso": []}})


def run_with_chart(at, chart_id: str, point_ids: list[int]):
    """One rerun with the typed widgets' values plus chart ``chart_id``'s selection (uses AppTest's private run)."""
    states = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = chart_id
    state.string_value = _selection(point_ids)
    at._run(states)
    assert not at.exception, at.exception
    return at


def _chosen(at) -> tuple[int | None, int | None]:
    """(the picker's value, the point whose full record is shown)."""
    record = [m.value for m in at.markdown if m.value.endswith(": full record**")]
    shown = int(record[0].split("#")[1].split(":")[0]) if record else None
    return at.selectbox(key="sweep_pick").value, shown


def _sweep_page():
    ids = write_fixed_run(Store(store_path()))
    at = new_app("pages/2_Sweep.py")
    a, b = ids["dense fp32"], ids["8-bit"]
    assert a != b and _chosen(at) == (None, None)
    return at, a, b


def test_picker_after_a_chart_click_wins_though_the_browser_resends_the_click():
    at, a, b = _sweep_page()
    old_chart = _chart(at, "sweep_acc_lat").proto.id
    run_with_chart(at, old_chart, [a])
    assert _chosen(at) == (a, a)
    at.selectbox(key="sweep_pick").set_value(b)
    run_with_chart(at, old_chart, [a])            # the picker's rerun still carries the chart's old selection
    assert _chosen(at) == (b, b)
    run_with_chart(at, old_chart, [a])            # and so does any later rerun
    at.toggle(key="sweep_table_all_columns").set_value(True).run()
    assert _chosen(at) == (b, b)


def test_chart_click_after_a_picker_choice_wins():
    at, a, b = _sweep_page()
    at.selectbox(key="sweep_pick").set_value(b).run()
    assert _chosen(at) == (b, b)
    run_with_chart(at, _chart(at, "sweep_acc_size").proto.id, [a])
    assert _chosen(at) == (a, a)


def test_the_same_chart_point_again_after_a_picker_choice_selects_it_again():
    at, a, b = _sweep_page()
    run_with_chart(at, _chart(at, "sweep_acc_lat").proto.id, [a])
    at.selectbox(key="sweep_pick").set_value(b).run()
    assert _chosen(at) == (b, b)
    # the user clicks point a again: plotly may first clear a selection it still shows, then select the point
    chart = _chart(at, "sweep_acc_lat").proto.id
    run_with_chart(at, chart, [])
    assert _chosen(at) == (b, b)                  # an emptied selection changes nothing
    run_with_chart(at, chart, [a])
    assert _chosen(at) == (a, a)


def test_a_clicked_chart_comes_back_without_a_selection():
    at, a, _ = _sweep_page()
    before = _chart(at, "sweep_acc_lat").proto.id
    run_with_chart(at, before, [a])
    after = _chart(at, "sweep_acc_lat").proto.id
    assert after != before                        # a fresh chart: nothing old for the browser to send again
    assert at.session_state[after].selection.points == []


def test_a_chart_click_on_the_overview_chooses_the_point():
    ids = write_fixed_run(Store(store_path()))
    at = new_app()
    a = ids["8-bit"]
    run_with_chart(at, _chart(at, "home_acc_size").proto.id, [a])
    assert any(m.value == f"**Point #{a}: full record**" for m in at.markdown)
    assert at.session_state["selected_point_id"] == a
