"""Pure pieces of the dashboard: Pareto front, points table, figures, report summary, estimates."""
import math

import pytest

try:  # tests/ is a package here; keep working if it is not
    from tests.app.test_app_support import ROOT  # noqa: F401  (puts the repo root on sys.path)
except ImportError:  # pragma: no cover
    from test_app_support import ROOT  # noqa: F401
from gemini_core.charts import style, sweep, training
from gemini_core.report import summary as report
from gemini_core.results.pareto import pareto_front
from gemini_core.results.suggest import suggest_point
from gemini_core.results.table import points_frame, reference_row, table_frame
from ui.sweep_plan import DEMO_GRID, demo_spec, estimate_seconds


def rec(pid, method="none", ratio=0.0, bits=32, execution="dense", acc=0.99, lat=1.0, size=1000, status="ok"):
    return {"point_id": pid, "run_id": "r", "label": f"p{pid}", "status": status,
            "config": {"prune_method": method, "prune_ratio": ratio, "finetune_steps": 0, "bits": bits,
                       "granularity": "per-channel", "execution": execution},
            "accuracy": acc, "macro_f1": acc, "latency_ms_p50": lat, "latency_ms_p90": lat and lat * 1.1,
            "size_bytes": size, "ideal_size_bytes": size and size * 0.9, "params": 100, "nonzero_params": 90,
            "macs": 1000, "peak_memory_bytes": 5000, "batch_size": 32, "device": "cpu:x", "backend": "torch"}


RECORDS = [
    rec(1),                                                                  # reference
    rec(2, bits=8, acc=0.985, lat=0.8, size=300),                            # front
    rec(3, "l1-structured", 0.5, 8, "sparse", acc=0.97, lat=1.4, size=200),  # front (smallest), slower
    rec(4, "l1-structured", 0.5, 8, "dense", acc=0.96, lat=0.9, size=300),   # dominated by 2
    rec(5, "l1-structured", 0.75, 2, status="failed", acc=None, lat=None, size=None),
]


def test_pareto_front_marks_non_dominated_only():
    assert pareto_front(RECORDS) == [True, True, True, False, False]
    # objectives are configurable; ties both stay on the front
    two = [{"a": 1, "b": 1}, {"a": 1, "b": 1}, {"a": 0, "b": 2}, {"a": 0, "b": 0}]
    assert pareto_front(two, {"a": "max", "b": "min"}) == [True, True, False, True]
    assert pareto_front([], {"a": "max"}) == []
    with pytest.raises(ValueError):
        pareto_front(two, {"a": "up"})
    assert pareto_front([{"a": float("nan")}, {"a": 1}], {"a": "max"}) == [False, True]


def test_points_frame_ratios_against_reference():
    df = points_frame(RECORDS)
    assert list(df["is_reference"]) == [True, False, False, False, False]
    row3 = df[df["point_id"] == 3].iloc[0]
    assert row3["speedup"] == pytest.approx(1.0 / 1.4)  # slower than the reference: < 1, kept visible
    assert row3["compression"] == pytest.approx(5.0)
    assert row3["accuracy_delta_pts"] == pytest.approx(-2.0)
    assert row3["execution"] == "sparse" and row3["bits"] == 8
    table = table_frame(df)
    assert "speed-up vs dense fp32 (x)" in table.columns and "MACs (estimate)" in table.columns
    assert "ideal size (KB, estimate)" in table.columns
    assert points_frame([]).empty


def test_figures_encode_bits_execution_and_front():
    df = points_frame(RECORDS)
    fig = sweep.fig_quality_vs_latency(df)
    names = [t.name for t in fig.data]
    # The ring marks the front of this chart's two axes: point 3 (smallest, but slower and less accurate
    # than point 2) is on the 3-objective front only, so it is not ringed here, and is on the size chart.
    assert names[0] == "Pareto front" and sorted(fig.data[0].x) == [0.8, 1.0]
    size_front = sweep.fig_quality_vs_size(df).data[0]
    assert size_front.name == "Pareto front" and 200 / 1024 in list(size_front.x)
    by_name = {t.name: t for t in fig.data}
    assert by_name["8-bit · sparse"].marker.symbol == "diamond"
    assert by_name["8-bit · dense"].marker.color == style.BIT_COLORS[8]
    assert by_name["32-bit · dense"].marker.color == style.BIT_COLORS[32]
    assert sum(len(t.x) for t in fig.data[1:]) == 4  # failed point not drawn
    assert "ms" in fig.layout.xaxis.title.text and "%" in fig.layout.yaxis.title.text
    assert "SLOWER" in str(by_name["8-bit · sparse"].customdata)
    size = sweep.fig_quality_vs_size(df)
    assert size.layout.xaxis.type == "log" and "KB" in size.layout.xaxis.title.text
    for f in sweep.sweep_figures(df).values():
        assert f.layout.title.text
    assert sweep.fig_sparse_vs_dense(df).layout.annotations  # subplot titles
    overlay = sweep.fig_fronts_overlay({"a": df, "b": df})
    assert {t.name for t in overlay.data} >= {"a front", "b front"}
    assert training.fig_training([]).layout.annotations[0].text == "waiting for the first epoch"
    empty = sweep.fig_quality_vs_latency(points_frame([]))
    assert empty.layout.annotations[0].text == "no measured points yet"


def test_compare_sentence_from_measured_values():
    ref = {"size_bytes": 4100, "latency_ms_p50": 2.7, "accuracy": 0.990, "label": "ref"}
    chosen = {"size_bytes": 1000, "latency_ms_p50": 1.0, "accuracy": 0.984, "label": "x"}
    c = report.compare(ref, chosen)
    assert c["headline"] == "4.1x smaller, 2.7x faster, -0.6 points accuracy"
    slow = report.compare(ref, {"size_bytes": 8200, "latency_ms_p50": 5.4, "accuracy": 0.995})
    assert slow["headline"] == "2.0x larger, 2.0x slower, +0.5 points accuracy" and slow["slower"]
    same = report.compare(ref, ref)
    assert same["headline"] == "1.0x smaller, 1.0x faster, ±0.0 points accuracy" and not same["slower"]


def test_suggest_point_and_html_report():
    df = points_frame(RECORDS)
    pick = suggest_point(df, max_drop_pts=1.0)
    assert int(pick["point_id"]) == 2
    ref = reference_row(df)
    page = report.build_report_html("Report <x>", {"name": "run", "run_id": "r"}, ref, pick, df,
                                    {"front": sweep.fig_report_front(df, 2)}, {"device": "cpu"})
    assert page.startswith("<!DOCTYPE html>") and "Report &lt;x&gt;" in page
    assert "3.3x smaller" in page and "1.2x faster" in page and "-0.5 points accuracy" in page
    assert "plotly" in page.lower() and "MACs (estimate)" in page
    assert 'src="https://cdn.plot.ly' not in page  # self-contained: plotly.js is inlined


def test_demo_grid_and_estimate():
    spec = demo_spec()
    assert spec.n_points() == 33 and DEMO_GRID["finetune_steps"] == (60,)  # 32 + the control
    seconds = estimate_seconds(spec, "digits")
    assert 15 < seconds < 40  # ~0.6 s/point + 0.5 s per pruning setting
    assert estimate_seconds(spec, "text") > 10 * seconds / 2
    assert estimate_seconds(spec, "digits", baseline_cached=False) > seconds


def test_sanitise_filename():
    from ui.state import sanitise_filename

    assert sanitise_filename("../../etc/passwd") == "passwd"
    assert sanitise_filename("..\\x\\my data (1).csv") == "my_data_1_.csv"
    assert sanitise_filename("...") == "upload"
    assert not math.isnan(len(sanitise_filename("a" * 300)))
    assert len(sanitise_filename("a" * 300)) == 80
