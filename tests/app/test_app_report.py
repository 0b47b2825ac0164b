"""Report page: baseline vs chosen point from measured values, front chart, downloadable HTML report."""
try:
    from tests.app.test_app_support import app_env, chart_by_title, media_mgr, new_app, seed_run, seed_template, seeded  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, chart_by_title, media_mgr, new_app, seed_run, seed_template, seeded  # noqa: F401

from gemini_core.report.summary import compare

PAGE = "pages/5_Report.py"


def test_report_headline_chart_and_html(seeded, media_mgr):
    records = seeded
    ref = next(r for r in records if r["config"]["prune_method"] == "none" and r["config"]["bits"] == 32)
    chosen = next(r for r in records if r["config"]["bits"] == 8 and r["config"]["prune_ratio"] == 0.5)
    at = new_app()
    at.session_state["selected_point_id"] = chosen["point_id"]
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    expected = compare(ref, chosen)
    assert [m.value for m in at.metric] == [expected["size_text"], expected["speed_text"], expected["quality_short"]]
    assert expected["size_ratio"] > 2                      # 50% pruned + 8-bit really is smaller
    headline = next(m.value for m in at.markdown if "<div class='gemini-headline'>" in m.value)
    assert expected["size_text"] in headline and expected["speed_text"] in headline
    front = chart_by_title(at, "chosen point starred")
    star = [t for t in front["data"] if t["name"] == "chosen point"]
    assert star and star[0]["text"] == [f"chosen #{chosen['point_id']}"]
    page = media_mgr(at.download_button(key="r_html")).decode()
    assert page.startswith("<!DOCTYPE html>")
    assert all(expected[k] in page for k in ("size_text", "speed_text", "quality_text"))
    assert "All measured points" in page and 'src="https://cdn.plot.ly' not in page

    # choosing another point updates the comparison and the session's choice
    at.selectbox(key="r_point").set_value(ref["point_id"]).run()
    assert at.session_state["selected_point_id"] == ref["point_id"]
    # the reference against itself: the paired interval is [0, 0], so no measurable change, in full (never cut
    # off in the metric box) and grey, neither green nor red
    assert at.metric[2].value == "no measurable change"
    headline = next(m.value for m in at.markdown if "<div class='gemini-headline'>" in m.value)
    assert "<span class='neutral'>no measurable change in accuracy (+0.0 points" in headline
    assert "class='bad'" not in headline and "class='good'" not in headline


def test_report_suggests_a_point_when_none_chosen(seeded):
    at = new_app(PAGE)
    assert any("suggested" in c.value for c in at.caption)
    assert at.selectbox(key="r_point").value is not None


def test_compare_words_worse_points_as_worse():
    ref = {"size_bytes": 4000, "latency_ms_p50": 2.0, "accuracy": 0.95}
    better = compare(ref, {"size_bytes": 1000, "latency_ms_p50": 0.5, "accuracy": 0.944})
    assert better["headline"] == "4.0x smaller, 4.0x faster, -0.6 points accuracy" and not better["slower"]
    worse = compare(ref, {"size_bytes": 8000, "latency_ms_p50": 3.0, "accuracy": 0.95})
    assert worse["headline"] == "2.0x larger, 1.5x slower, ±0.0 points accuracy" and worse["slower"]
    unknown = compare(ref, {"size_bytes": 0, "latency_ms_p50": 0, "accuracy": float("nan")})
    assert unknown["headline"] == "size unknown, latency unknown, accuracy unknown"
