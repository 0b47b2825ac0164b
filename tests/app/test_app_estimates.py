"""Time estimates learned from this machine's measured seconds per point and per pruning setting."""
from __future__ import annotations

try:
    from tests.app.test_app_support import app_env, new_app  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, new_app  # noqa: F401

import time

from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.paths import store_path
from gemini_core.results.store import Store
from ui.estimates import estimate_range, format_range, learned_costs


def _store_measured(n=6, point_s=2.0, prune_s=10.0):
    store = Store(store_path())
    store.ensure_run("timed", "timed", "digits", "b", {})
    for i in range(n):
        ratio = 0.5 if i % 2 else 0.0
        store.add_point("timed", "b", f"k{i}", {
            "run_id": "timed", "label": f"p{i}", "status": "ok", "seconds": point_s + 0.1 * i,
            "prune_seconds": prune_s if ratio else 0.0, "accuracy": 0.9, "latency_ms_p50": 1.0, "size_bytes": 10,
            "config": {"prune_method": "l1-structured" if ratio else "none", "prune_ratio": ratio,
                       "finetune_steps": 60, "bits": 32 if i < 3 else 8, "execution": "dense"}})


def test_prior_until_measured_then_learned_range():
    spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.0, 0.5), bits=(32, 8), finetune_steps=(60,))
    idle = (1.0, None)  # an idle machine: the load now scales every estimate (the last tests here)
    low, high, source = estimate_range(spec, "digits", load=idle)
    assert "planning figures" in source and low < high
    assert learned_costs("digits") is None
    _store_measured()
    learned = learned_costs("digits")
    assert learned["n"] == 6 and 2.0 <= learned["point"][0] <= learned["point"][1] <= 2.5
    assert learned["setting"] == (10.0, 10.0)
    low, high, source = estimate_range(spec, "digits", load=idle)
    assert "6 points measured on this machine" in source
    # 4 grid points + the fair control at 2.1-2.4 s each, + one or two recovery settings at 10 s
    assert spec.n_points() == 5
    assert 5 * 2.0 + 10 <= low <= high <= 5 * 2.5 + 20
    assert format_range(low, high).endswith(" s") and "-" in format_range(low, high)


def test_sweep_page_shows_the_learned_range():
    _store_measured()
    at = new_app("pages/2_Sweep.py")
    info = [i.value for i in at.info if "points**" in i.value][0]
    assert "measured on this machine for digits" in info and "estimate" in info


# -- while a job runs: its own pace, counted down, never growing without a reason ---------------------------------
def _progress_text(snap: dict) -> str:
    """The status line ``views.job_status`` draws for ``snap``, read back through Streamlit."""
    from streamlit.testing.v1 import AppTest

    def script(snap):
        from ui.views import job_status

        job_status(snap)

    at = AppTest.from_function(script, args=(snap,), default_timeout=30).run()
    assert not at.exception, at.exception
    return at.progress[0].proto.text


def _sweep_snap(start_s: float, point_times: list[float], total: int, now: float) -> dict:
    t0 = 1_000.0
    return {"state": "running", "title": "demo", "message": f"measured {len(point_times)} of {total} points",
            "records": [{"status": "ok"} for _ in point_times], "record_times": [t0 + t for t in point_times],
            "events": [], "total": total, "elapsed": now, "now": t0 + now, "started": t0 - start_s}


def test_time_left_at_the_first_point_is_not_the_start_up_times_the_points_left():
    """57 s of start-up (training the baseline) then one point: the old line said "about 1823 s left"
    (57 s x 32 points); the start-up says nothing of the pace, so no figure until two points exist."""
    text = _progress_text(_sweep_snap(57.0, [57.0], 33, 57.5))
    assert "1823" not in text and "s left" not in text and "two points" in text
    # three points 1.5 s apart: the pace is this job's own, about 1.5 s x 30 points left
    text = _progress_text(_sweep_snap(57.0, [57.0, 58.5, 60.0], 33, 60.0))
    left = int(text.split("about ")[1].split(" s left")[0])
    assert 40 <= left <= 50, text


def test_time_left_counts_down_and_says_why_when_it_grows():
    from ui.estimates import time_left

    snap = _sweep_snap(5.0, [5.0, 6.0, 7.0, 8.0], 20, 8.0)
    first, why = time_left(snap, snap["now"])
    later, _ = time_left(snap, snap["now"] + 5.0)
    assert first == 16.0 and later == 11.0 and not why  # counted down between points, no reason needed
    slow = _sweep_snap(5.0, [5.0, 6.0, 7.0, 8.0, 30.0], 20, 30.0)  # the next point took 22 s
    grown, why = time_left(slow, slow["now"])
    assert grown > first and "latest point took 22 s" in why
    assert "latest point took 22 s" in _progress_text(slow)


def test_training_time_left_is_a_range_when_early_stopping_can_end_it():
    """Text training was estimated from all 800 planned steps while early stopping ended near 260: with
    patience the estimate is a range whose low end is the early stop."""
    events = [{"event": "step", "step": s, "total_steps": 800, "epoch": 1 + (s - 1) // 20, "loss": 0.5}
              for s in range(1, 101)]
    events += [{"event": "epoch", "epoch": 5, "step": 100, "total_steps": 800, "seconds": 50.0,
                "stale_epochs": 3, "patience": 8, "val_accuracy": 0.8}]
    snap = {"state": "running", "title": "baseline", "message": "training the baseline", "records": [],
            "record_times": [], "events": events, "total": 1, "elapsed": 60.0, "now": 0.0}
    text = _progress_text(snap)
    # 0.5 s a step (the training's own clock): at most 700 steps = 350 s, at least 5 more epochs = 100 steps = 50 s
    assert "50-350 s left" in text and "early stopping" in text, text


def test_estimates_scale_with_the_load_they_were_measured_at_and_the_load_now():
    from ui.estimates import load_factor

    _store_measured()  # measured on an idle machine (no load in the records)
    spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.0, 0.5), bits=(32, 8), finetune_steps=(60,))
    idle = estimate_range(spec, "digits", load=(1.0, 0.5))
    busy = estimate_range(spec, "digits", load=(2.5, 4.0))
    assert busy[0] == 2.5 * idle[0] and busy[1] == 2.5 * idle[1] and "load now (4.0" in busy[2]
    assert load_factor(8.0, 2) == 2.0 and load_factor(0.3, 2) == 1.0 and load_factor(None, 2) == 1.0
    # points measured at load 8 on 2 cores took twice an idle machine's time: learned as half
    store = Store(store_path())
    store.ensure_run("busy", "busy", "breast-cancer", "b2", {})
    for i in range(4):
        store.add_point("busy", "b2", f"q{i}", {"run_id": "busy", "label": f"q{i}", "status": "ok", "seconds": 4.0,
                                               "load_avg_1m": 8.0, "cores": 2, "accuracy": 0.9, "latency_ms_p50": 1.0,
                                               "size_bytes": 10, "config": {"prune_ratio": 0.0, "bits": 32}})
    assert learned_costs("breast-cancer")["point"] == (2.0, 2.0)


def test_demo_caption_counts_the_start_and_knows_the_baseline_ships():
    from ui.kinds.classifier import demo_caption

    text = demo_caption({"scenario": "digits", "options": {}, "train": None})
    assert "ships with gemini" in text and "from the click" in text and "load now" in text


def test_llm_estimate_counts_converting_the_model_on_a_cold_home(tmp_path, monkeypatch):
    """The smallest LLM grid was estimated "about 1 min" and took 829 s to its first point: converting the GGUF
    (375 s at load ~4, of which the tokenizer most) was not counted. On a cold home the first point's estimate includes it; once converted, the figure
    measured here replaces the planning one, and a cached model loads in seconds."""
    import json

    from gemini_core.kinds.llm import source
    from gemini_core.kinds.llm.sweep import LLMSweepSpec
    from ui.kinds import llm as llm_ui

    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(llm_ui, "current_load", lambda: (1.0, 0.5))
    spec = LLMSweepSpec(quant_methods=("rtn",), bits=(8,), group_sizes=(64,))
    model = {"scenario": "llm", "options": {"model": "smollm2"}}
    from gemini_core.kinds.llm.sweep import estimate_seconds

    point = min(estimate_seconds(p) for p in spec.points())

    def first(load_s):
        return f"first point after about {format_range(0.6 * (load_s + point), 1.5 * (load_s + point))}"

    cold = llm_ui.plan_text(spec, model)
    assert "converting SmolLM2 from its GGUF once" in cold and first(llm_ui.CONVERT_SECONDS) in cold, cold
    folder = source.converted_dir()
    folder.mkdir(parents=True)
    (folder / source.META_FILE).write_text(json.dumps({"files": {"model.safetensors": {}}, "convert_seconds": 375}))
    warm = llm_ui.plan_text(spec, model)
    assert "loading SmolLM2 from the cache" in warm and first(llm_ui.LOAD_CACHED_SECONDS) in warm, warm
    (folder / source.META_FILE).write_text(json.dumps({"convert_seconds": 375}))  # measured, cache gone
    assert "measured 375 s here" in llm_ui.plan_text(spec, model) and first(375) in llm_ui.plan_text(spec, model)
    # measured at load 8 on 2 cores (2x an idle machine): 187.5 s on an idle one, scaled to the load now
    (folder / source.META_FILE).write_text(json.dumps({"convert_seconds": 375, "convert_load_avg_1m": 8.0,
                                                       "convert_cores": 2}))
    assert first(187.5) in llm_ui.plan_text(spec, model)


def test_a_long_stage_before_the_first_point_shows_its_own_clock():
    """Converting SmolLM2's tokenizer ran 100 s under one unchanging line at 0%: the line now says how long the
    step it names has run, and a job's message change starts that clock again."""
    from ui.jobs import Job

    snap = _sweep_snap(0.0, [], 5, 120.0)
    snap.update(message="converting the tokenizer of SmolLM2-135M-Instruct.Q4_1.gguf", stage_seconds=100.0)
    assert "this step 100 s so far" in _progress_text(snap)
    job = Job("stages")
    job.message = "converting the tokenizer"
    first = job.message_at
    time.sleep(0.01)
    job.message = "converting the tokenizer"  # the same line: the same stage
    assert job.message_at == first
    job.message = "dequantizing the GGUF: tensor 1 of 272"
    assert job.message_at > first and job.snapshot()["stage_seconds"] < 1.0
