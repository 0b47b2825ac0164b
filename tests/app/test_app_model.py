"""Model page: default digits, baseline card from a background job, data upload preview + checks, errors."""
from pathlib import Path

try:
    from tests.app.test_app_support import app_env, chart_by_title, new_app, wait_job  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, chart_by_title, new_app, wait_job  # noqa: F401

PAGE = "pages/1_Model.py"
CSV = b"text,label\n" + b"".join(
    f"good movie number {i} loved it,pos\nbad film {i} hated it,neg\n".encode() for i in range(30))


def test_load_baseline_shows_card_and_training_history():
    at = new_app(PAGE)
    assert at.selectbox(key="m_scenario").value == "digits"
    at.button(key="m_train").click().run()
    job = wait_job(at, "train", timeout=120)
    assert job.state == "done", job.snapshot()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"].endswith("%") and float(metrics["Test accuracy"][:-1]) > 90
    assert metrics["Latency p50 (batch 32)"].endswith(" ms")
    assert metrics["Checkpoint size"].endswith(" KB") and metrics["Parameters"] and metrics["MACs (estimate)"]
    assert at.session_state["baseline_info"]["scenario"] == "digits"
    spec = chart_by_title(at, "Baseline training")        # the cached baseline's per-epoch history
    epochs = spec["data"][0]["x"]
    assert len(epochs) >= 2 and spec["data"][1]["name"] == "val accuracy"
    kept = [t for t in spec["data"] if str(t.get("name", "")).startswith("kept: epoch")]  # early stopping's choice
    assert len(kept) == 1 and kept[0]["x"][0] in epochs and "kept epoch" in spec["layout"]["title"]["text"]
    assert "baseline test accuracy" in at.sidebar.markdown[0].value   # the router's sidebar, on this page


def test_text_upload_preview_columns_and_check(app_env):
    at = new_app(PAGE)
    at.selectbox(key="m_scenario").set_value("text").run()
    assert "Upload a file" in at.info[0].value
    assert at.button(key="m_train").disabled
    at.file_uploader(key="m_upload").set_value(("../../my reviews.csv", CSV, "text/csv")).run()
    assert not at.exception, at.exception
    saved = list((app_env / "uploads").iterdir())
    assert len(saved) == 1 and saved[0].name.endswith("-my_reviews.csv")   # sanitised, under home/uploads
    assert list(at.dataframe[0].value.columns) == ["text", "label"]
    at.selectbox(key="m_text_col").set_value("text")
    at.selectbox(key="m_label_col").set_value("label").run()
    assert any("pos: 30" in c.value and "neg: 30" in c.value for c in at.caption)
    at.button(key="m_validate").click().run()
    assert "60 usable rows" in at.success[0].value and "2 classes" in at.success[0].value
    at.button(key="m_use").click().run()
    model = at.session_state["model"]
    assert model["scenario"] == "text" and model["options"]["text_column"] == "text"
    assert Path(model["options"]["data"]).parent == app_env / "uploads"


def test_bad_inputs_show_errors_and_the_app_keeps_working(tmp_path):
    at = new_app(PAGE)
    at.selectbox(key="m_scenario").set_value("text").run()
    bad = tmp_path / "one_class.csv"
    bad.write_text("text,label\nhello,a\nworld,a\nagain,a\n")
    at.text_input(key="m_data_path").set_value(str(bad)).run()
    at.button(key="m_validate").click().run()
    assert not at.exception
    assert "cannot be used" in at.error[0].value
    at.text_input(key="m_data_path").set_value(str(tmp_path / "missing.csv")).run()
    assert "does not exist" in at.error[0].value
    at.selectbox(key="m_scenario").set_value("images").run()
    at.text_input(key="m_images_path").set_value(str(tmp_path / "nope")).run()
    assert "does not exist" in at.error[0].value and at.button(key="m_train").disabled
    at.selectbox(key="m_scenario").set_value("breast-cancer").run()
    assert not at.error and not at.button(key="m_train").disabled
    at.switch_page("pages/2_Sweep.py").run()                  # the session goes on elsewhere
    assert not at.exception and at.title[0].value == "Sweep"


def test_shared_sms_spam_tsv_preview(shared_data):
    path = shared_data / "sms_spam" / "SMSSpamCollection"
    at = new_app(PAGE)
    at.selectbox(key="m_scenario").set_value("text").run()
    at.text_input(key="m_data_path").set_value(str(path)).run()
    at.radio(key="m_header").set_value("no").run()
    assert list(at.dataframe[0].value.columns) == ["0", "1"]
    at.selectbox(key="m_text_col").set_value("1")
    at.selectbox(key="m_label_col").set_value("0").run()
    assert any("ham:" in c.value and "spam:" in c.value for c in at.caption)


def test_cancelled_training_is_not_kept_as_the_baseline(app_env):
    cached = [p for p in (app_env / "baselines").iterdir() if not p.name.startswith(".")]
    before = {p.name: (p / "model.safetensors").read_bytes() for p in cached}
    at = new_app(PAGE)
    at.checkbox(key="m_retrain").check()
    at.button(key="m_train").click().run()
    assert not at.button(key="m_cancel").disabled
    at.button(key="m_cancel").click().run()
    from ui.state import registry
    job = registry().latest("train")
    job.join(120)
    at.run()
    assert job.state == "cancelled", job.snapshot()
    # a stopped training is never cached, and the good baseline it was retraining stays as it was
    after = {p.name: (p / "model.safetensors").read_bytes()
             for p in (app_env / "baselines").iterdir() if not p.name.startswith(".")}
    assert after == before
    assert not at.exception


def test_upload_columns_and_model_survive_a_reload(app_env):
    at = new_app(PAGE)
    at.selectbox(key="m_scenario").set_value("text").run()
    at.file_uploader(key="m_upload").set_value(("reviews.csv", CSV, "text/csv")).run()
    at.selectbox(key="m_text_col").set_value("text")
    at.selectbox(key="m_label_col").set_value("label").run()
    at.button(key="m_validate").click().run()
    at.button(key="m_use").click().run()
    model = at.session_state["model"]
    assert model["scenario"] == "text"
    # a reload is a new session of the same server: the form and the current model come back
    again = new_app(PAGE)
    assert again.session_state["model"] == model
    assert again.selectbox(key="m_scenario").value == "text"
    assert again.text_input(key="m_data_path").value.endswith("-reviews.csv")   # the saved upload
    assert again.selectbox(key="m_text_col").value == "text" and again.selectbox(key="m_label_col").value == "label"
    assert "text" in again.sidebar.markdown[0].value
