"""The HTML report for non-engineers: headline with its uncertainty, glossary, conditions, alternatives,
a folded human table, under 1 MB."""
from __future__ import annotations

import re

import pytest

from gemini_core.charts.images import png_unavailable_reason
from gemini_core.charts.sweep import fig_quality_vs_size, fig_report_front
from gemini_core.report.summary import (
    build_report_html,
    compare,
    comparison_rows,
    headline_sentence,
    human,
    human_table,
)
from gemini_core.results.metrics import ACCURACY
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
    assert ACCURACY.margin(0.965, 360) == pytest.approx(1.90, abs=0.01)   # 1.96 sqrt(.965 .035 / 360)
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
                             {"front": fig_report_front(df, chosen_id), "size": fig_quality_vs_size(df)},
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


# -- a causal LM's report: the same code, read through the kind ("llm") and its metric (perplexity) ---------
LLM_REFERENCE = {"kind": "llm", "label": "fp32", "perplexity": 9.5, "decode_tokens_per_s": 5.6, "tokens_scored": 100,
                 "latency_ms_p10": 10.0, "latency_ms_p50": 12.0, "latency_ms_p90": 14.0, "size_bytes": 4e6}


def test_overlapping_prefill_ranges_are_no_measurable_change_in_speed():
    within = {**LLM_REFERENCE, "label": "rtn 8-bit", "perplexity": 9.6, "latency_ms_p10": 5.0,
              "latency_ms_p50": 6.0, "latency_ms_p90": 11.0, "size_bytes": 1e6}
    apart = {**within, "latency_ms_p10": 4.0, "latency_ms_p50": 4.5, "latency_ms_p90": 5.0}
    text = headline_sentence(LLM_REFERENCE, within)
    assert "not measurably faster or slower at prefill" in text and "raises perplexity by 1.1%" in text
    assert "lower is better" in text and "accuracy" not in text
    assert "2.7x faster at prefill" in headline_sentence(LLM_REFERENCE, apart)


def test_an_llm_report_shows_each_runtime_point_against_its_bandwidth_limits():
    chosen = {**LLM_REFERENCE, "label": "gptq-sym-head 4-bit g32 [llama.cpp]", "perplexity": 10.5,
              "decode_tokens_per_s": 300.0, "bandwidth_limit_tokens_per_s": 285.0,
              "fraction_of_bandwidth_limit": 300 / 285, "read_limit_tokens_per_s": 1000.0,
              "fraction_of_read_limit": 0.3}
    rows = {name: (a, b) for name, a, b in comparison_rows(LLM_REFERENCE, chosen)}
    assert rows["decode against the bandwidth limits (copy / read)"] == ("–", "105% of 285 tokens/s / 30% of 1000")
    assert rows["decode (tokens/s)"] == ("5.6", "300.0")  # the kind's own figure (its extra_columns)
    assert rows["prefill p50 of one sequence"] == ("12.000 ms", "12.000 ms")  # what the kind's latency times
    assert not any("accuracy" in name for name in rows)
    # without a runtime point among them, the row is not there at all
    assert "decode against the bandwidth limits (copy / read)" not in dict(
        (n, a) for n, a, _ in comparison_rows(LLM_REFERENCE, LLM_REFERENCE))


def test_an_llm_comparison_is_paired_over_windows_when_both_points_kept_them():
    tokens = [63] * 8
    base = [140.0, 150.0, 145.0, 160.0, 138.0, 152.0, 149.0, 141.0]
    ref = {**LLM_REFERENCE, "window_nll": base, "window_tokens": tokens}
    same = {**ref, "label": "rtn 8-bit", "window_nll": [v + d for v, d in zip(base, (1, -1, .5, -.5, .2, -.3, .1, 0))]}
    worse = {**ref, "label": "rtn 2-bit", "perplexity": 14.0, "window_nll": [v + 20 for v in base]}
    assert compare(ref, same)["quality_text"].startswith("no measurable change in perplexity (")
    c = compare(ref, worse)
    assert c["quality_measurable"] and c["quality_text"].endswith("n=8 perplexity") and c["quality_change"] > 40
    assert "On the same 8 evaluation windows that is a measurable change of +" in headline_sentence(ref, worse)


def test_the_report_table_takes_the_metric_and_the_kinds_own_columns():
    import pandas as pd

    table = human_table(pd.DataFrame([{**LLM_REFERENCE, "point_id": 1, "pareto": True, "perplexity_increase_pct": 0.0,
                                       "status": "ok"}]))
    assert list(table.columns)[:6] == ["point", "configuration", "on the front", "perplexity (lower is better)",
                                       "Δ perplexity (%)", "prefill p50 of one sequence (ms)"]
    assert "decode (tokens/s)" in table.columns and "accuracy (%)" not in table.columns
    assert table["perplexity (lower is better)"].tolist() == ["9.500"]
