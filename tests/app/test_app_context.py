"""One context: the current model decides which run, points and recommendation every page shows; a run of
another model is reached through History (and the Report's and Export's run lists), labelled as such."""
try:
    from tests.app.test_app_support import app_env, new_app, wait_job  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, new_app, wait_job  # noqa: F401

from gemini_core.results.store import Store
from tests.fixed_run import EXPECTED_LOSS_1_LABEL, RUN_ID, write_fixed_run

LLM_RUN = "llmrun000001"
LLM_MODEL = {"scenario": "llm", "options": {}, "train": None, "adaptive": None}


def _two_models():
    """The digits fixed run, then a newer run of the causal LM (the server's last sweep is not digits')."""
    store = Store()
    ids = write_fixed_run(store)
    reference = {"quant_method": "none", "bits": 32, "prune_method": "none", "sparsity": 0.0,
                 "pattern": "unstructured", "mlp_ratio": 0.0, "head_ratio": 0.0, "recovery": "none",
                 "recovery_steps": 0}
    store.ensure_run(LLM_RUN, "llm run for tests", "llm", "llm-baseline", {"bits": [32, 8]}, kind="llm")
    for label, cfg, ppl, lat, size in (("fp32", reference, 10.0, 10.0, 4_000_000),
                                       ("rtn 8-bit", {**reference, "quant_method": "rtn", "bits": 8}, 10.4, 5.0,
                                        1_000_000)):
        store.add_point(LLM_RUN, "llm-baseline", label, {
            "kind": "llm", "run_id": LLM_RUN, "label": label, "status": "ok", "config": cfg, "perplexity": ppl,
            "latency_ms_p50": lat, "size_bytes": size, "device": "cpu", "backend": "torch"})
    store.set_status(LLM_RUN, "finished")
    return ids


def _texts(at) -> str:
    return "\n".join(e.value for e in [*at.caption, *at.info, *at.success, *at.markdown])


def test_overview_and_sweep_show_the_current_models_run_not_the_servers_last():
    _two_models()
    at = new_app()
    text = _texts(at)
    assert "fixed run for tests" in text and "llm run for tests" not in text
    assert "perplexity" not in " ".join(s.value for s in at.success)  # the recommendation is in accuracy
    at.switch_page("pages/2_Sweep.py").run()
    assert "fixed run for tests" in _texts(at) and "llm run for tests" not in _texts(at)
    marked = [o for o in at.selectbox(key="sweep_pick").options if "recommended" in o]
    assert len(marked) == 1 and "l1 0.25 · 8-bit" in marked[0]  # the picker marks the ship panel's answer
    at.session_state["model"] = dict(LLM_MODEL)
    at.run()
    assert "llm run for tests" in _texts(at) and "fixed run for tests" not in _texts(at)
    assert "perplexity" in " ".join(s.value for s in at.success)


def test_report_opens_on_the_current_models_run_and_its_recommendation():
    ids = _two_models()
    at = new_app("pages/5_Report.py")
    assert not at.exception, at.exception
    assert at.selectbox(key="r_run").value == RUN_ID
    assert at.selectbox(key="r_point").value == ids[EXPECTED_LOSS_1_LABEL]
    options = at.selectbox(key="r_run").options
    assert any("llm run for tests" in o and "another model" in o for o in options)
    assert not any("fixed run for tests" in o and "another model" in o for o in options)


def test_export_preselects_the_recommendation_not_a_point_clicked_to_inspect():
    ids = _two_models()
    at = new_app()
    at.session_state["selected_point_id"] = ids["8-bit"]
    at.session_state["selected_point_source"] = "chart"  # clicked in a chart to read its record
    at.switch_page("pages/4_Export.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="x_run").value == RUN_ID
    assert at.selectbox(key="x_point").value == ids[EXPECTED_LOSS_1_LABEL]
    marked = [o for o in at.selectbox(key="x_point").options if "recommended" in o]
    assert len(marked) == 1 and f"#{ids[EXPECTED_LOSS_1_LABEL]} " in marked[0]


def test_sensitivity_shows_the_current_models_analysis_not_another_models_job():
    at = new_app("pages/6_Sensitivity.py")
    at.multiselect(key="sn_bits").set_value([8])
    at.multiselect(key="sn_phases").set_value(["quantization"])
    at.number_input(key="sn_examples").set_value(64)
    at.run()
    at.button(key="sn_start").click().run()
    job = wait_job(at, "sensitivity", timeout=240)
    assert job.state == "done", job.snapshot()
    assert at.get("plotly_chart")  # the digits profile is drawn while digits is the current model
    at.session_state["model"] = {"scenario": "breast-cancer", "options": {}, "train": None, "adaptive": None}
    at.run()
    assert not at.exception, at.exception
    assert any("another model (digits)" in c.value for c in at.caption)
    assert "No analysis yet for this model" in at.info[0].value and not at.get("plotly_chart")


def test_history_compare_words_each_runs_bounds_in_its_own_metric():
    _two_models()
    at = new_app("pages/3_History.py")
    at.multiselect(key="h_compare").set_value([RUN_ID, LLM_RUN]).run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "recommended" in d.value.columns)
    bounds = dict(zip(table["run"], table["bounds in its metric"]))
    assert bounds["llm run for tests"] == "perplexity increase ≤ 5%"
    assert bounds["fixed run for tests"] == "accuracy loss ≤ 1 points"
    assert not any("accuracy loss" in c.value for c in at.caption)  # no one-metric sentence over both runs


def test_history_marks_the_runs_of_another_model():
    _two_models()
    at = new_app("pages/3_History.py")
    table = at.dataframe[0].value
    models = dict(zip(table["run"], table["model"]))
    assert models == {RUN_ID: "current model", LLM_RUN: "another model"}
    labels = at.selectbox(key="h_target").options
    assert [o for o in labels if "another model" in o] == [o for o in labels if LLM_RUN in o]


def test_model_page_shows_no_other_models_baseline_card():
    at = new_app("pages/1_Model.py")
    at.button(key="m_train").click().run()
    job = wait_job(at, "train", timeout=120)
    assert job.state == "done" and "Test accuracy" in [m.label for m in at.metric]
    at.session_state["model"] = {"scenario": "breast-cancer", "options": {}, "train": None, "adaptive": None}
    at.run()
    assert not at.exception, at.exception
    assert "Current model: **breast-cancer**" in _texts(at)
    assert not at.metric and not at.get("plotly_chart")  # not digits' card and training chart
    assert any("another model (digits)" in c.value for c in at.caption)


def test_the_export_link_chooses_its_point_though_a_chart_click_alone_does_not():
    ids = _two_models()
    at = new_app("pages/2_Sweep.py")
    at.session_state["selected_point_id"] = ids["8-bit"]
    at.session_state["selected_point_source"] = "chart"
    at.run()
    links = [e.proto for e in at.get("page_link")]
    export = next(p for p in links if p.label == f"Export point #{ids['8-bit']} →")
    assert export.query_string == f"point={ids['8-bit']}"
    at.query_params["point"] = str(ids["8-bit"])  # what following the link does
    at.switch_page("pages/4_Export.py").run()
    assert not at.exception, at.exception
    assert at.radio(key="x_source").value == "the point chosen on the Sweep page"
    assert any(f"Point #{ids['8-bit']}" in m.value for m in at.markdown)


def test_two_llms_on_the_same_text_are_two_models():
    """An LLM loaded from a local folder is not the built-in one: its runs and jobs belong to another model."""
    from types import SimpleNamespace

    from ui.state import job_of_model, run_of_model

    builtin_run = {"scenario": "llm", "baseline": {"scenario_options": {}}}
    folder_run = {"scenario": "llm", "baseline": {"scenario_options": {"model": "hf:/models/tiny-llama"}}}
    folder = {**LLM_MODEL, "options": {"model": "hf:/models/tiny-llama"}}
    assert run_of_model(builtin_run, LLM_MODEL) and not run_of_model(folder_run, LLM_MODEL)
    assert run_of_model(folder_run, folder) and not run_of_model(builtin_run, folder)
    job = SimpleNamespace(scenario_name="llm", options={"model": "hf:/models/tiny-llama"})
    assert job_of_model(job, folder) and not job_of_model(job, LLM_MODEL)
