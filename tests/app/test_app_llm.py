"""Sweep and Model pages with the LLM: the grid form, the demo grid (no 4-bit groups of 32), and a stored LLM
run drawn with perplexity (lower is better) as its quality axis. A tiny random Llama in a temporary folder."""
import numpy as np
import pytest

try:
    from tests.app.test_app_support import (  # noqa: F401
        app_env,
        chart_by_title,
        media_mgr,
        new_app,
        point_count,
        wait_job,
    )
except ImportError:  # pragma: no cover
    from test_app_support import app_env, chart_by_title, media_mgr, new_app, point_count, wait_job  # noqa: F401

from tests.engine.conftest import build_tiny_llama, build_tokenizer

PAGE = "pages/2_Sweep.py"


@pytest.fixture()
def tiny_dir(tmp_path):
    folder = tmp_path / "tiny_llama"
    tokenizer = build_tokenizer()
    build_tiny_llama(len(tokenizer)).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def _llm_app(page, options):
    at = new_app()
    at.session_state["model"] = {"scenario": "llm", "options": options, "train": None, "adaptive": None}
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _tiny_sweep(tiny_dir) -> list:
    from gemini_core.kinds.llm.point import LLMSettings
    from gemini_core.kinds.llm.sweep import LLMSweepSpec
    from gemini_core.scenarios import get_scenario
    from gemini_core.workflows.sweep import run_sweep

    settings = LLMSettings(context_len=64, eval_tokens=128, calib_samples=2, calib_seq_len=32, prefill_tokens=16,
                           prefill_repeats=2, decode_new_tokens=3, decode_repeats=1)
    spec = LLMSweepSpec(quant_methods=("rtn",), bits=(8,), group_sizes=(32,), prune_methods=("magnitude",),
                        sparsities=(0.5,), settings=settings)
    records = list(run_sweep(get_scenario("llm", model=f"hf:{tiny_dir}"), spec))
    assert len(records) == 3
    return records


def test_sweep_page_draws_a_stored_llm_runs_perplexity(tiny_dir, app_env):
    records = _tiny_sweep(tiny_dir)
    at = _llm_app(PAGE, {"model": f"hf:{tiny_dir}"})
    chart = chart_by_title(at, "Perplexity vs prefill latency (lower is better)")
    assert point_count(chart) == 3
    assert chart["layout"]["yaxis"]["title"]["text"].startswith("perplexity")
    ys = np.concatenate([np.asarray(t["y"], dtype=float) for t in chart["data"]
                         if t.get("name") not in ("Pareto front", "recommended")])
    assert sorted(ys.tolist()) == pytest.approx(sorted(r["perplexity"] for r in records))
    front = next(t for t in chart["data"] if t.get("name") == "Pareto front")
    best = min(records, key=lambda r: r["perplexity"])["perplexity"]
    assert best == pytest.approx(min(np.asarray(front["y"], dtype=float)))  # lowest perplexity is on the front
    assert any("perplexity" in s.value for s in at.success)  # the recommendation speaks of perplexity


def test_llm_grid_form_and_demo_grid_avoid_4_bit_group_32():
    at = _llm_app(PAGE, {})  # the built-in SmolLM2 (the form never loads it)
    assert any("4-bit group-32 storage" in c.value for c in at.caption)
    at.button(key="sw_fill_demo").click().run()
    assert not at.exception, at.exception
    assert at.multiselect(key="llm_groups").value == [64] and 4 in at.multiselect(key="llm_bits").value
    assert "points**" in at.info[0].value and "estimate" in at.info[0].value
    at.multiselect(key="llm_groups").set_value([32]).run()
    assert not any("measures nothing" in w.value for w in at.warning)  # a symmetric g32 grid is not the source's
    at.multiselect(key="llm_quant").set_value(["rtn", "gptq-asym"]).run()
    assert any("gptq-asym at 4 bits with groups of 32" in w.value and "measures nothing" in w.value
               for w in at.warning)
    at.multiselect(key="llm_quant").set_value(["rtn"]).run()
    at.multiselect(key="llm_prune").set_value(["wanda"]).run()
    at.multiselect(key="llm_sparsity").set_value([]).run()
    assert at.button(key="sw_start").disabled is False  # an empty sparsity list falls back to 0.5


def test_an_optional_execution_that_is_not_installed_says_how_to_install_it():
    import importlib.util

    at = _llm_app(PAGE, {})
    at.multiselect(key="llm_exec").set_value(["torch", "llama.cpp"]).run()
    assert not at.exception, at.exception
    said = any("llama.cpp is not installed here" in c.value and "pip install" in c.value for c in at.caption)
    assert said == (importlib.util.find_spec("llama_cpp") is None)


def test_model_page_offers_the_llm_and_its_source_note():
    at = new_app("pages/1_Model.py")
    at.selectbox(key="m_scenario").set_value("llm").run()
    assert not at.exception, at.exception
    assert any("Q4_1" in i.value and "measures nothing" in i.value for i in at.info)
    assert at.button(key="m_train").disabled and not at.button(key="m_use").disabled


def test_sensitivity_page_profiles_decoder_blocks_by_perplexity(tiny_dir):
    at = _llm_app("pages/6_Sensitivity.py", {"model": f"hf:{tiny_dir}"})
    at.multiselect(key="sn_llm_bits").set_value([2]).run()
    at.selectbox(key="sn_llm_group").set_value(32).run()
    at.number_input(key="sn_llm_tokens").set_value(128).run()
    at.button(key="sn_start").click().run()
    assert not at.exception, at.exception
    job = wait_job(at, "sensitivity", timeout=180)
    assert job.state == "done", job.snapshot()
    heat = chart_by_title(at, "Quantizing one decoder block at a time (RTN): perplexity increase (%)")
    assert heat["data"][0]["y"] == ["block 0", "block 1"]
    assert any("Keep at higher precision: block" in s.value for s in at.success)


def test_export_page_exports_an_llm_point_and_reproduces_its_perplexity(tiny_dir, app_env):
    records = _tiny_sweep(tiny_dir)
    point = next(r for r in records if r["config"]["quant_method"] == "rtn")
    at = new_app()
    # the point of a run of the current model: another model's point is not offered as the chosen one
    at.session_state["model"] = {"scenario": "llm", "options": {"model": f"hf:{tiny_dir}"}, "train": None,
                                 "adaptive": None}
    at.session_state["selected_point_id"] = point["point_id"]
    at.switch_page("pages/4_Export.py").run()
    assert not at.exception, at.exception
    assert "Perplexity (lower is better)" in [m.label for m in at.metric]
    at.button(key="x_export").click().run()
    job = wait_job(at, "export", timeout=180)
    assert job.state == "done", job.snapshot()
    assert job.result["check"]["perplexity"] == point["perplexity"]
    assert any("perplexity reproduced exactly" in s.value for s in at.success), [s.value for s in at.success]


def test_report_page_words_an_llm_run_in_perplexity(tiny_dir, app_env, media_mgr):
    records = _tiny_sweep(tiny_dir)
    chosen = next(r for r in records if r["config"]["prune_method"] == "magnitude")
    at = new_app()
    at.session_state["selected_point_id"] = chosen["point_id"]
    at.switch_page("pages/5_Report.py").run()
    assert not at.exception, at.exception
    assert "Perplexity (lower is better)" in [m.label for m in at.metric]
    assert any("perplexity" in m.value and "lower is better" in m.value for m in at.markdown)
    chart_by_title(at, "Perplexity vs latency: chosen point")
    page = media_mgr(at.download_button(key="r_html")).decode()
    assert "perplexity (lower is better)" in page and "test accuracy [95% Wilson interval]" not in page


def test_llm_sweep_from_the_page_shows_points_live_and_cancels(tiny_dir):
    at = _llm_app(PAGE, {"model": f"hf:{tiny_dir}"})
    at.multiselect(key="llm_quant").set_value(["rtn"]).run()
    at.multiselect(key="llm_bits").set_value([8, 4, 3, 2]).run()
    at.multiselect(key="llm_groups").set_value([32]).run()
    assert "**5 points**" in at.info[0].value
    at.button(key="sw_start").click().run()
    assert not at.exception, at.exception
    job = wait_job(at, "sweep", timeout=240, until=lambda j: len(j.records) >= 1)
    at.button(key="sw_cancel").click().run()
    job = wait_job(at, "sweep", timeout=240)
    assert job.state in ("cancelled", "done") and 1 <= len(job.records) <= 5
    assert all(r["status"] == "ok" and r["perplexity"] > 1 for r in job.records)
    from gemini_core.results.store import Store

    stored = Store().points(job.records[0]["run_id"])
    assert len(stored) == len(job.records)  # every point shown was stored the moment it was measured
    # the job's word is the store's: cancelled (even when the stop came after the last point), else finished
    assert Store().get_run(job.records[0]["run_id"])["status"] == ("cancelled" if job.state == "cancelled"
                                                                   else "finished")
    chart = chart_by_title(at, "Perplexity vs prefill latency")
    assert point_count(chart) == len(job.records)


def test_llm_recipe_round_trip_and_what_the_form_cannot_take():
    """An LLM grid saves to a recipe and loads back into the LLM form; a classifier model refuses it, and
    values the form does not offer are one clear line (no multiselect exception)."""
    from gemini_core.errors import ConfigError
    from ui import recipes

    state = {"llm_quant": ["rtn", "gptq"], "llm_bits": [8, 4], "llm_groups": ["per-channel", 64],
             "llm_prune": ["wanda"], "llm_sparsity": [0.5, "2:4"], "llm_mlp": [0.25], "llm_heads": [],
             "llm_recovery": ["distill"], "llm_steps": 40, "llm_exec": ["torch", "openvino"], "sw_name": "mine"}
    recipe = recipes.recipe_from_form(state, "llm")
    assert recipe["spec"]["kind"] == "llm" and recipe["spec"]["group_sizes"] == [None, 64]
    for fmt in ("json", "yaml"):
        assert recipes.parse(recipes.dump(recipe, fmt), f"r.{fmt}", "llm") == state
    with pytest.raises(ConfigError, match="is an LLM sweep; choose the LLM"):
        recipes.parse(recipes.dump(recipe, "json"), "r.json", "digits")
    classifier = recipes.recipe_from_form({"sw_methods": ["l1-structured"], "sw_ratios": [0.5], "sw_bits": [8],
                                           "sw_gran": ["per-channel"], "sw_exec": ["dense"], "sw_ft": [0],
                                           "sw_batch": 8}, "digits")
    with pytest.raises(ConfigError, match="is a classifier sweep"):
        recipes.parse(recipes.dump(classifier, "json"), "c.json", "llm")
    for field, value, match in (("group_sizes", [96], "group sizes 96 is not offered"),
                                ("bits", [6], "bits 6 is not offered"),
                                ("recovery_steps", [20, 40], "runs one count"),
                                ("quant_methods", ["evil"], "evil"),
                                ("bits", 4, "is a list")):
        bad = dict(recipe, spec=dict(recipe["spec"], **{field: value}))
        with pytest.raises(ConfigError, match=match):
            recipes.parse(recipes.dump(bad, "json"), "x.json", "llm")
    with pytest.raises(ConfigError, match="unknown LLM sweep setting"):
        recipes.parse(recipes.dump(dict(recipe, spec={"kind": "llm", "evil": [1]}), "json"), "x.json", "llm")


def test_history_reruns_an_llm_runs_grid_into_the_llm_form(tiny_dir, app_env):
    records = _tiny_sweep(tiny_dir)
    at = new_app()
    at.session_state["model"] = {"scenario": "llm", "options": {"model": f"hf:{tiny_dir}"}, "train": None,
                                 "adaptive": None}
    at.switch_page("pages/3_History.py").run()
    at.selectbox(key="h_open").set_value(records[0]["run_id"]).run()
    at.button(key="h_rerun").click().run()
    assert not at.exception, at.exception
    assert at.session_state["llm_quant"] == ["rtn"] and at.session_state["llm_bits"] == [8]
    assert at.session_state["llm_groups"] == [32] and at.session_state["llm_prune"] == ["magnitude"]
    assert at.session_state["sw_name"].endswith("(again)")
