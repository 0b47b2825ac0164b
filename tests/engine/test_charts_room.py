"""Chart specs for a room: the legend is a key under the plot, labels are not cut, whiskers say what they are,
latency goes on a log axis when it spans decades, percentages stop at 100 and the report draws the page's
chart. These read the plotly figure specs (the charts are plotly), no browser."""
from __future__ import annotations

import pytest

from gemini_core.charts import sensitivity, style, sweep, training
from gemini_core.results.store import Store
from gemini_core.results.table import points_frame
from tests.fixed_run import RUN_ID, write_fixed_run


@pytest.fixture
def frame(tmp_path):
    """The fixed run, each point measured on 270 test examples (so its whiskers have an n)."""
    store = Store(tmp_path / "s.sqlite")
    write_fixed_run(store)
    records = [dict(r, test_n=270) for r in store.points(RUN_ID)]
    return points_frame(records)


def _legend_outside(fig) -> bool:
    legend = fig.layout.legend
    return legend.orientation == "h" and (legend.yref == "container" or (legend.y is not None and legend.y < 0))


def test_every_scatter_legend_is_a_key_under_the_plot_not_a_column_beside_it(frame):
    figs = [sweep.fig_quality_vs_latency(frame), sweep.fig_quality_vs_size(frame), sweep.fig_report_front(frame, 3),
            sweep.fig_metric_vs_ratio(frame), sweep.fig_fronts_overlay({"a": frame})]
    assert all(_legend_outside(f) for f in figs)


def test_the_recommended_label_points_into_the_chart_and_is_never_clipped(frame):
    fig = sweep.fig_quality_vs_latency(frame, highlight_id=3)
    star = next(t for t in fig.data if t.name == "recommended")
    assert star.text == ("recommended #3",) and star.cliponaxis is False
    # #3 is the fastest but two and near the top of the accuracy range: its label goes down and to the right.
    assert star.textposition == "bottom right"
    assert style.label_position(9.0, 0.0, [0, 10], [0, 10]) == "top left"


def test_whiskers_say_what_they_are_with_the_test_set_size(frame):
    fig = sweep.fig_quality_vs_latency(frame)
    assert any(t.error_y.array is not None for t in fig.data)
    assert fig.layout.title.subtitle.text == "whiskers: 95% interval (Wilson), n = 270 test examples"


def test_latency_spanning_decades_gets_a_log_axis_and_a_narrow_span_does_not(frame):
    assert sweep.fig_quality_vs_latency(frame).layout.xaxis.type == "linear"  # 0.3-1.4 ms
    wide = frame.assign(latency_ms_p50=frame["latency_ms_p50"] * [1, 1, 1, 1, 1, 1, 40])  # one point at 56 ms
    fig = sweep.fig_quality_vs_latency(wide)
    assert fig.layout.xaxis.type == "log" and "log scale" in fig.layout.xaxis.title.text
    assert sweep.fig_report_front(wide, 3).layout.xaxis.type == "log"  # the report draws the same axes


def test_the_accuracy_axis_stops_at_100_percent(frame):
    near_top = frame.assign(accuracy=frame["accuracy"].clip(upper=0.998))
    for fig in (sweep.fig_quality_vs_latency(near_top), sweep.fig_quality_vs_size(near_top)):
        low, high = fig.layout.yaxis.range
        assert high <= 100 and low >= 0


def test_the_validation_accuracy_axis_of_training_stops_at_100_percent():
    history = [{"event": "epoch", "epoch": e, "train_loss": 1 / e, "val_accuracy": min(1.0, 0.9 + 0.02 * e)}
               for e in range(1, 7)]
    fig = training.fig_training(history)
    assert fig.layout.yaxis2.range[1] <= 100 and _legend_outside(fig)
    adaptive = training.fig_adaptive_training([dict(h, lr=0.1, params_removed_ratio=0.1, macs_ratio=0.9)
                                               for h in history])
    assert adaptive.layout.yaxis2.range[1] <= 100


def test_sensitivity_titles_sit_above_the_top_axis_title():
    profile = {"params": {"ratios": [0.25, 0.5], "bits": [8, 4]},
               "quantization": [{"layer": "net.0", "kind": "Linear",
                                 "results": [{"bits": 8, "drop_points": 0.1}, {"bits": 4, "drop_points": 1.0}]}]}
    fig = sensitivity.fig_heatmap(profile, "quantization")
    assert fig.layout.xaxis.side == "top" and fig.layout.xaxis.title.text
    # The title hangs from the figure's top edge and the top margin holds it and the axis (ticks + title).
    assert fig.layout.title.yref == "container" and fig.layout.title.yanchor == "top"
    assert fig.layout.margin.t >= 110


def test_the_report_front_is_the_pages_chart_with_the_chosen_point_starred(frame):
    page, report = sweep.fig_quality_vs_latency(frame), sweep.fig_report_front(frame, 3)
    assert report.layout.legend == page.layout.legend and report.layout.height == page.layout.height
    assert report.layout.title.subtitle.text == page.layout.title.subtitle.text
    chosen = next(t for t in report.data if t.name == "chosen point")
    assert chosen.cliponaxis is False and chosen.text == ("chosen #3",)



def test_parallel_coordinates_labels_are_short_enough_not_to_run_into_each_other(frame):
    fig = sweep.fig_parallel(frame)
    labels = [d.label for d in fig.data[0].dimensions]
    assert "latency (ms)" in labels and max(len(label) for label in labels) <= 16, labels


def test_the_overlay_of_runs_explains_its_whiskers_too(frame):
    fig = sweep.fig_fronts_overlay({"a": frame, "b": frame})
    assert fig.layout.title.subtitle.text == "whiskers: 95% interval (Wilson), n = 270 test examples"
