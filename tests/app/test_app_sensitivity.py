"""Sensitivity page: analysis as a background job with live heatmaps and bars, allocator form and table,
the allocation measured as a sweep next to uniform points, errors shown in the page."""
try:
    from tests.app.test_app_support import _registry, app_env, chart_by_title, new_app, wait_job  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import _registry, app_env, chart_by_title, new_app, wait_job  # noqa: F401

PAGE = "pages/6_Sensitivity.py"


def small_analysis(at, phases=("pruning", "quantization", "latency")):
    at.multiselect(key="sn_ratios").set_value([0.5])
    at.multiselect(key="sn_bits").set_value([8, 2])
    at.multiselect(key="sn_phases").set_value(list(phases))
    at.number_input(key="sn_examples").set_value(64)
    at.run()
    assert not at.exception, at.exception


def test_analysis_runs_in_background_and_draws_heatmaps_and_bars():
    at = new_app(PAGE)
    assert at.title[0].value == "Sensitivity"
    assert "No analysis yet" in at.info[0].value
    small_analysis(at)
    at.button(key="sn_start").click().run()
    assert not at.exception, at.exception
    assert at.button(key="sn_start").disabled and not at.button(key="sn_cancel").disabled
    job = wait_job(at, "sensitivity", timeout=240)
    assert job.state == "done", job.snapshot()
    assert "finished" in at.success[0].value
    quant = chart_by_title(at, "Quantizing one layer at a time")
    heat = quant["data"][0]
    assert heat["type"] == "heatmap" and list(heat["x"]) == ["8-bit", "2-bit"] and len(heat["y"]) == 5
    prune = chart_by_title(at, "Pruning one coupled group at a time")
    assert list(prune["data"][0]["x"]) == ["ratio 0.5"] and len(prune["data"][0]["y"]) == 4
    assert prune["layout"]["xaxis"]["type"] == "category"            # ticks at the chosen ratios only
    bars = chart_by_title(at, "latency share and weight outliers")
    names = [t["name"] for t in bars["data"]]
    assert "fp32 latency share" in names and "max |w| / std" in names
    assert all(v >= 0 for t in bars["data"] for v in t["x"] if v is not None)
    # stored: a fresh session (no job in the registry) shows the same analysis
    from gemini_core.results.store import Store
    stored = Store().analyses()
    assert len(stored) == 1 and stored[0]["status"] == "complete"


def test_allocator_proposes_an_editable_allocation_and_measures_it_against_uniform():
    at = new_app(PAGE)
    small_analysis(at, phases=("quantization",))
    at.button(key="sn_start").click().run()
    assert wait_job(at, "sensitivity", timeout=240).state == "done"
    at.number_input(key="sn_max_drop").set_value(1.0).run()
    at.button(key="sn_propose").click().run()
    assert not at.exception, at.exception
    assert any("**Predicted**" in m.value for m in at.markdown)
    editors = [d for d in at.dataframe if d.proto.editing_mode]  # st.data_editor: an Arrow table in editing mode
    assert len(editors) == 1
    table = editors[0].value
    assert list(table.columns) == ["kind", "name", "bits", "prune_ratio", "predicted_drop_points"]
    assert set(table["name"]) == {"features.0", "features.3", "features.7", "classifier.1", "classifier.3"}
    assert set(table["bits"]) <= {"32", "8", "2", "–"} and table["predicted_drop_points"].sum() <= 1.0 + 1e-9
    assert "None" not in set(table["bits"]) | set(table["prune_ratio"])   # "–" where a cell does not apply
    at.button(key="sn_measure").click().run()
    assert not at.exception, at.exception
    job = wait_job(at, "sweep", timeout=240)
    assert job.state == "done", job.snapshot()
    per_layer = [r for r in job.records if (r.get("config") or {}).get("layer_overrides")]
    uniform = [r for r in job.records if not (r.get("config") or {}).get("layer_overrides")]
    assert len(per_layer) == 1 and "per-layer" in per_layer[0]["label"] and len(uniform) >= 2
    assert all(r["status"] == "ok" for r in job.records)


def test_bad_settings_show_errors_not_tracebacks():
    at = new_app(PAGE)
    at.multiselect(key="sn_bits").set_value([]).run()
    assert "choose at least one bit width" in at.error[0].value
    assert at.button(key="sn_start").disabled
    small_analysis(at, phases=("quantization",))
    at.button(key="sn_start").click().run()
    assert wait_job(at, "sensitivity", timeout=240).state == "done"
    at.radio(key="sn_objective").set_value("speedup").run()
    at.button(key="sn_propose").click().run()
    assert not at.exception, at.exception
    assert any("needs the latency profile" in e.value for e in at.error)
