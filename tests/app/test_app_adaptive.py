"""Model page, adaptive training: per-epoch loss, val accuracy, lr, params and MACs drawn live; cancel; sweeps use it."""
try:
    from tests.app.test_app_support import app_env, chart_by_title, new_app, wait_job  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, chart_by_title, new_app, wait_job  # noqa: F401

PAGE = "pages/1_Model.py"


def _adaptive_page(epochs: int, ratio: float = 0.5):
    at = new_app(PAGE)
    at.radio(key="m_mode").set_value("adaptive").run()
    assert not at.exception, at.exception
    at.number_input(key="a_epochs_digits").set_value(epochs)
    at.slider(key="a_ratio").set_value(ratio)
    at.number_input(key="a_tolerance").set_value(0.0)  # guard off: a deterministic schedule
    at.run()
    assert not at.error, [e.value for e in at.error]
    assert at.button(key="m_train").label == "Train adaptively"
    return at


def _panel(spec: dict, name: str) -> list:
    return [list(t["y"]) for t in spec["data"] if t.get("name") == name][0]


def test_adaptive_training_is_drawn_live_and_becomes_the_sweeps_baseline(app_env):
    from gemini_core.kinds.classifier.spec import SweepSpec
    from ui.compute_jobs import SweepJob

    at = _adaptive_page(epochs=8)
    at.button(key="m_train").click().run()
    # while it runs: the chart already shows the epochs finished so far
    live = wait_job(at, "train", timeout=240,
                    until=lambda j: j.running and sum(e.get("event") == "epoch" for e in j.events) >= 2)
    if live.running:
        spec = chart_by_title(at, "Adaptive training")
        assert 2 <= len(spec["data"][0]["x"]) < 8
    job = wait_job(at, "train", timeout=240)
    assert job.state == "done", job.snapshot()
    spec = chart_by_title(at, "Adaptive training")
    assert [int(x) for x in spec["data"][0]["x"]] == list(range(1, 9))
    losses, val = _panel(spec, "train loss"), _panel(spec, "val accuracy")
    assert losses[-1] < losses[0] and val[-1] > 80          # it learned
    params = _panel(spec, "parameters")
    assert params[0] <= 100 and params[-1] < 75              # 50% of channels gone: far fewer parameters
    assert _panel(spec, "MACs (estimate)")[-1] < 75
    lrs = _panel(spec, "learning rate")
    assert len(set(round(v, 12) for v in lrs)) > 1           # the rate moved
    caption = " ".join(c.value for c in at.caption)
    assert "epoch 8/8: pruned 50%" in caption and "→" in caption
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Test accuracy"][:-1]) > 80
    model = at.session_state["model"]
    assert model["adaptive"]["target_ratio"] == 0.5 and "adaptive" in at.sidebar.markdown[0].value
    # a sweep on the current model finds the adaptive baseline in the cache instead of training
    sweep = SweepJob(model["scenario"], SweepSpec(), adaptive=model["adaptive"]).start()
    sweep.join(120)
    assert sweep.state == "done", sweep.snapshot()
    assert any(e.get("event") == "cached" for e in sweep.events)
    assert sweep.baseline_info["baseline_key"] == job.baseline_info["baseline_key"]
    assert sweep.records[0]["params"] == job.result["reference"]["params"]
    # the sensitivity analysis of the current model works on the same adaptive baseline
    from ui.compute_jobs import SensitivityJob

    _, analysed = SensitivityJob(model["scenario"], None, adaptive=model["adaptive"])._baseline()
    assert analysed.key == job.baseline_info["baseline_key"]


def test_cancelled_adaptive_training_keeps_nothing(app_env):
    before = sorted(p.name for p in (app_env / "baselines").iterdir())
    at = _adaptive_page(epochs=30)
    at.button(key="m_train").click().run()
    job = wait_job(at, "train", timeout=120, until=lambda j: any(e.get("event") == "step" for e in j.events))
    assert not at.button(key="m_cancel").disabled
    at.button(key="m_cancel").click().run()
    job.join(120)
    at.run()
    assert job.state == "cancelled", job.snapshot()
    assert sorted(p.name for p in (app_env / "baselines").iterdir()) == before
    assert any("cancelled" in w.value and "not kept" in w.value for w in at.warning)
    assert not at.exception


def test_impossible_adaptive_settings_are_named_and_block_training(app_env):
    at = new_app(PAGE)
    at.radio(key="m_mode").set_value("adaptive").run()
    at.selectbox(key="a_method").set_value("none")
    at.slider(key="a_ratio").set_value(0.5).run()
    assert not at.exception
    assert any("nothing to prune" in e.value for e in at.error)
    assert at.button(key="m_train").disabled and at.button(key="m_use").disabled
