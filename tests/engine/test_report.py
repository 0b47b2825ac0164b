"""The HTML report for non-engineers: headline with its uncertainty, glossary, conditions, alternatives,
a folded human table, under 1 MB."""
from __future__ import annotations

import re

import pytest

from gemini_core.charts.images import png_unavailable_reason
from gemini_core.charts.sweep import fig_accuracy_vs_size, fig_report_front
from gemini_core.report.summary import accuracy_margin_pts, build_report_html, headline_sentence, human
from gemini_core.results.store import Store
from gemini_core.results.suggest import alternatives
from gemini_core.results.table import points_frame, reference_row
from tests.fixed_run import RUN_ID, write_fixed_run


@pytest.fixture
def fixed(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    ids = write_fixed_run(store)
    run = store.get_run(RUN_ID)
    return run, ids, points_frame(store.points(RUN_ID))


def test_headline_states_its_uncertainty():
    assert accuracy_margin_pts(0.965, 360) == pytest.approx(1.90, abs=0.01)   # 1.96 sqrt(.965 .035 / 360)
    ref = {"accuracy": 0.97, "latency_ms_p50": 1.0, "size_bytes": 80_000, "label": "orig"}
    chosen = {"accuracy": 0.965, "latency_ms_p50": 0.6, "size_bytes": 15_000, "label": "l1 0.25 ft60 / 8-bit"}
    text = headline_sentence(ref, chosen, 360)
    assert "5.3x smaller and 1.7x faster" in text and "loses 0.5 accuracy points" in text
    assert "360 test examples" in text and "±1.9 points" in text and "within that uncertainty" in text


def test_human_cells_have_no_raw_values():
    assert human(None, "{:.2f}") == "–" and human(float("nan"), "pct") == "–" and human(True, "yesno") == "yes"
    assert human(-0.7407, "{:+.2f}") == "-0.74" and human(1848842, "bytes") == "1.76 MB"
    assert human("None", None) == "–"


def test_report_glossary_conditions_alternatives_table_and_size(fixed):
    if png_unavailable_reason():
        pytest.skip(png_unavailable_reason())
    run, ids, df = fixed
    chosen_id = ids["l1 0.25 · 8-bit"]
    chosen = df[df["point_id"] == chosen_id].iloc[0]
    alts = alternatives(df, chosen_id)
    assert len(alts) == 2 and chosen_id not in [a["point_id"] for a in alts]
    page = build_report_html("Report", run, reference_row(df), chosen, df,
                             {"front": fig_report_front(df, chosen_id), "size": fig_accuracy_vs_size(df)},
                             {"cpu": "test cpu", "cores": 2, "load_avg_1m": 1.5}, alternatives=alts)
    assert len(page.encode()) < 1_000_000
    assert page.count("data:image/png;base64,") == 2 and "cdn.plot.ly" not in page
    glossary = page.split("<h2>Glossary</h2>")[1].split("</dl>")[0]
    for term in ("ft60", "l1-structured", "per-channel", "p50", "MACs", "Pareto front"):
        assert term in glossary, term
    assert "360 examples" in page and "torch threads used: 1" in page and "load average" in page
    assert "alternative 1" in page and "alternative 2" in page
    table = page.split("<details>")[1]
    assert "None" not in table and "True" not in table and "nan" not in table
    assert not re.search(r"-?\d+\.\d{4,}", table)                 # no raw floats like -0.7407
