"""The dashboard's choices survive a server restart (kept in <home>/ui_state.json, atomically
written, validated on read like any untrusted file). A "restart" here clears Streamlit's process caches
(the process memory the state used to live in) and opens a new session."""
from __future__ import annotations

import json

import pytest
import streamlit as st

try:
    from tests.app.test_app_support import app_env, new_app, seed_template, seeded  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, new_app, seed_template, seeded  # noqa: F401

SWEEP, MODEL, HISTORY = "pages/2_Sweep.py", "pages/1_Model.py", "pages/3_History.py"


def _restart() -> None:
    st.cache_resource.clear()  # the process memory (jobs, shared_memory) is gone, as after a restart
    st.cache_data.clear()


def test_model_upload_columns_sweep_form_and_run_survive_a_restart(app_env, seeded, tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(30)))
    at = new_app(MODEL)
    at.selectbox(key="m_scenario").set_value("text").run()
    at.text_input(key="m_data_path").set_value(str(data)).run()
    at.button(key="m_use").click().run()
    assert not at.exception, at.exception
    at.switch_page(SWEEP).run()
    at.multiselect(key="sw_bits").set_value([32, 4]).run()
    at.text_input(key="sw_name").set_value("kept across restarts").run()
    run_id = seeded[0]["run_id"]
    at.switch_page(HISTORY).run()
    at.selectbox(key="h_open").set_value(run_id).run()
    assert not at.exception, at.exception

    saved = json.loads((app_env / "ui_state.json").read_text())
    assert saved["history_run"] == run_id and saved["sweep_form"]["sw_bits"] == [32, 4]
    assert not list(app_env.glob(".ui_state.json*"))  # no temporary left behind

    _restart()
    fresh = new_app(SWEEP)  # a new session in a new process: no query parameters, empty memory
    assert fresh.multiselect(key="sw_bits").value == [32, 4]
    assert fresh.text_input(key="sw_name").value == "kept across restarts"
    assert fresh.session_state["model"]["scenario"] == "text"
    assert fresh.session_state["model"]["options"]["data"] == str(data)
    fresh.switch_page(MODEL).run()
    assert fresh.selectbox(key="m_scenario").value == "text"
    assert fresh.text_input(key="m_data_path").value == str(data)
    fresh.switch_page(HISTORY).run()
    assert fresh.selectbox(key="h_open").value == run_id  # reopened without ?run=
    assert not fresh.warning or all("ui_state.json" not in w.value for w in fresh.warning)



BAD_STATES = [
    ("not-json", b"{this is not json", "cannot be read"),
    ("not-an-object", b"[1, 2, 3]", "is not a version-1 dashboard state"),
    ("wrong-version", json.dumps({"version": 99}).encode(), "is not a version-1 dashboard state"),
    ("unknown-scenario", json.dumps({"version": 1, "model": {"scenario": "no-such"}}).encode(),
     "the saved model was dropped: unknown scenario"),
    ("path-outside-roots", json.dumps({"version": 1, "model": {"scenario": "text", "options": {"data": "/etc/passwd"}}}
                                      ).encode(), "the saved model was dropped"),
    ("sweep-wrong-types", json.dumps({"version": 1, "sweep_form": {"sw_bits": "32", "sw_batch": 1e9}}).encode(),
     "the saved sweep form was dropped: sw_bits is not a list"),
    ("batch-out-of-range", json.dumps({"version": 1, "sweep_form": {"sw_batch": 10**9}}).encode(),
     "sw_batch is not a whole number"),
    ("run-id-markup", json.dumps({"version": 1, "history_run": "<img src=x onerror=alert(1)>"}).encode(),
     "the saved history run was dropped"),
    ("huge-file", b'{"version": 1, "pad": "' + b"x" * (300 * 1024) + b'"}', "the saved dashboard state is ignored"),
]


@pytest.mark.parametrize("case_id, blob, message", BAD_STATES, ids=[c[0] for c in BAD_STATES])
def test_a_bad_state_file_is_one_warning_and_the_defaults(case_id, blob, message, app_env):
    (app_env / "ui_state.json").write_bytes(blob)
    at = new_app()  # the first page of the session says it, once
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning if "ui_state.json" in w.value]
    assert len(warnings) == 1 and message in warnings[0], warnings
    at.switch_page(SWEEP).run()
    assert not at.exception, at.exception
    assert not [w.value for w in at.warning if "ui_state.json" in w.value]  # not again in this session
    assert at.multiselect(key="sw_bits").value == [32, 8]  # the defaults
    assert at.session_state["model"]["scenario"] == "digits"


def test_a_read_only_home_keeps_the_state_in_the_process(app_env, monkeypatch):
    from ui import saved_state

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(saved_state, "write_file_atomic", refuse)
    at = new_app(SWEEP)
    at.multiselect(key="sw_bits").set_value([32, 2]).run()
    assert not at.exception, at.exception
    assert not (app_env / "ui_state.json").exists()
    assert new_app(SWEEP).multiselect(key="sw_bits").value == [32, 2]  # same process: a new tab still sees it
