"""The four answers (report/story.py) and the comparison they share with the Report page and the HTML report:
the speed says the same thing everywhere, including when the timings overlap."""
from __future__ import annotations

from gemini_core.report.story import story
from gemini_core.report.summary import compare, headline_sentence
from gemini_core.results.store import Store
from gemini_core.results.table import points_frame
from tests.fixed_run import RUN_ID, write_fixed_run


def test_overlapping_timings_are_not_measurably_faster_in_the_headline_and_the_sentence():
    reference = {"label": "dense fp32", "accuracy": 0.97, "size_bytes": 80_000, "latency_ms_p10": 1.4,
                 "latency_ms_p50": 1.6, "latency_ms_p90": 12.0}
    loaded = {**reference, "label": "8-bit", "size_bytes": 20_000, "latency_ms_p10": 1.6, "latency_ms_p50": 11.9,
              "latency_ms_p90": 29.0}  # timed while the machine was busy: its range overlaps the reference's
    cmp = compare(reference, loaded)
    assert cmp["speed_text"] == "not measurably faster or slower" and not cmp["slower"]
    assert "not measurably faster or slower" in cmp["headline"]
    assert "not measurably faster or slower" in headline_sentence(reference, loaded)
    apart = {**loaded, "latency_ms_p10": 12.5, "latency_ms_p90": 13.0}
    assert compare(reference, apart)["speed_text"] == "7.4x slower" and compare(reference, apart)["slower"]


def test_the_story_ships_the_recommendation_and_gains_what_compare_says(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    ids = write_fixed_run(store)
    df = points_frame(store.points(RUN_ID))
    told = story(df)
    assert [a.question for a in told.answers] == ["What did we gain?", "What did it cost?", "How sure are we?",
                                                  "What do we ship?"]
    assert told.chosen["point_id"] == ids["l1 0.25 · 8-bit"] == told.recommendation.point_id
    cmp = compare(told.reference, told.chosen)
    assert told.answers[0].answer == f"{cmp['size_text']}, {cmp['speed_text']}"
    assert told.answers[0].detail.startswith("Size 78.1 KB → 14.6 KB; latency p50")
    assert told.answers[3].answer.startswith(f"point #{ids['l1 0.25 · 8-bit']}: ")
    by_hand = story(df, chosen_id=ids["8-bit"])
    assert by_hand.answers[3].detail == f"Chosen by hand. Under the same bounds the rule would ship #{told.chosen['point_id']}."
