"""Untrusted input through the dashboard: overwrite asks and refuses what is not ours, checkpoints
never choose what is read, stale temporaries are never offered, uploads are recognised by content, and
user-controlled text is escaped where HTML is allowed."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

try:
    from tests.app.test_app_support import app_env, new_app, seed_template, seeded, wait_job  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, new_app, seed_template, seeded, wait_job  # noqa: F401

EXPORT = "pages/4_Export.py"
MODEL = "pages/1_Model.py"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def one_export(seeded):
    from gemini_core.paths import exports_dir
    from gemini_core.results.store import Store
    from gemini_core.workflows import export

    point = next(r for r in seeded if r["config"]["bits"] == 8)
    path = export.export_point(Store(), point["point_id"], exports_dir() / "mine")
    return point, path


# -- 4. overwrite only what is ours, and ask first ---------------------------------------------------------
@pytest.mark.parametrize("case_id, make, message", [
    ("other-content", lambda d: (d.mkdir(), (d / "keep.txt").write_text("mine")), "not an export written by gemini"),
    ("foreign-recipe", lambda d: (d.mkdir(), (d / "recipe.json").write_text('{"format": "x"}')),
     "not an export written by gemini"),
], ids=["other-content", "foreign-recipe"])
def test_export_page_refuses_folders_that_are_not_ours(case_id, make, message, app_env, seeded):
    folder = app_env / "exports" / case_id
    folder.parent.mkdir(exist_ok=True)
    make(folder)
    at = new_app(EXPORT)
    at.text_input(key="x_folder").set_value(case_id).run()
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="x_export").disabled
    assert sorted(p.name for p in folder.iterdir()) in (["keep.txt"], ["recipe.json"])


def test_export_page_asks_before_replacing_an_export(app_env, one_export):
    point, path = one_export
    before = (path / "recipe.json").read_bytes()
    at = new_app(EXPORT)
    at.text_input(key="x_folder").set_value("mine").run()
    assert any("already holds an export" in w.value for w in at.warning), [w.value for w in at.warning]
    assert at.button(key="x_export").disabled                      # not until the user says so
    assert (path / "recipe.json").read_bytes() == before
    at.checkbox(key="x_replace").check().run()
    assert not at.button(key="x_export").disabled


# -- 8. stale temporaries are cleaned and never listed --------------------------------------------------------
def test_stale_temporary_exports_are_never_listed(app_env, one_export):
    _, path = one_export
    stale = [app_env / "exports" / ".mine.tmp-999999-abc", app_env / "exports" / ".mine.old-999998-x"]
    for folder in stale:
        shutil.copytree(path, folder)
    at = new_app(EXPORT)
    assert at.selectbox(key="x_check_folder").options == ["mine"]
    assert not any(folder.exists() for folder in stale)


# -- 2. a checkpoint never chooses what is read -----------------------------------------------------------------
def _variant(path: Path, name: str, options: dict) -> Path:
    target = path.parent / f"variant-{name.replace(':', '_').replace('/', '_')}"
    shutil.copytree(path, target)
    recipe = json.loads((target / "recipe.json").read_text())
    recipe["scenario"]["name"], recipe["scenario"]["options"] = name, options
    (target / "recipe.json").write_text(json.dumps(recipe))
    return target


@pytest.mark.parametrize("name, options, message", [
    ("text", {"data": "/etc/passwd"}, "give the test data now"),
    ("tabular", {"data": "/etc/passwd"}, "give the test data now"),
    ("images", {"data": "/dev/zero"}, "give the test data now"),
    ("hf:bert-base-uncased", {"data": "/etc/passwd"}, "give the model's folder now"),
], ids=["text-etc-passwd", "tabular-etc-passwd", "images-dev-zero", "hub-id"])
def test_check_a_checkpoint_never_reads_recipe_paths(name, options, message, app_env, one_export):
    _, path = one_export
    target = _variant(path, name, options)
    at = new_app(EXPORT)
    at.selectbox(key="x_check_folder").set_value(target.name).run()
    at.button(key="x_check").click().run()
    job = wait_job(at, "check", timeout=60)
    assert job.state == "failed"
    errors = [e.value for e in at.error]
    assert any(message in e for e in errors), errors
    assert not any("root:" in e for e in errors)
    assert not any("details (for a bug report)" in x.label for x in at.expander)


@pytest.mark.parametrize("field, value, message", [
    ("x_check_data_path", "/etc/passwd", "outside the folders this dashboard may read"),
    ("x_check_model", "/etc", "outside the folders this dashboard may read"),
], ids=["data-outside-roots", "model-outside-roots"])
def test_check_a_checkpoint_typed_paths_follow_the_roots_rule(field, value, message, app_env, one_export):
    at = new_app(EXPORT)
    at.selectbox(key="x_check_folder").set_value("mine").run()
    at.text_input(key=field).set_value(value).run()
    at.button(key="x_check").click().run()
    assert any(message in e.value for e in at.error), [e.value for e in at.error]


# -- 5. uploads: recognised by content, named by hash ----------------------------------------------------------
def test_extensionless_upload_is_accepted_by_content(app_env):
    data = "".join(f"{'ham' if i % 2 else 'spam'}\tmessage number {i} is here\n" for i in range(40)).encode()
    at = new_app(MODEL)
    at.selectbox(key="m_scenario").set_value("text").run()
    at.file_uploader(key="m_upload").set_value(("SMSSpamCollection", data, "application/octet-stream")).run()
    assert not at.exception, at.exception
    saved = list((app_env / "uploads").iterdir())
    assert len(saved) == 1 and re.fullmatch(r"[0-9a-f]{16}-SMSSpamCollection", saved[0].name)
    assert len(at.dataframe) and at.dataframe[0].value.shape[0] > 0


# -- 9. user-controlled text is escaped where HTML is allowed --------------------------------------------------
@pytest.mark.parametrize("data_name", ["<img src=x onerror=alert(1)>.csv", "<script>alert(1)</script>.tsv",
                                       "a&b<b>bold</b>.csv"])
def test_sidebar_escapes_the_model_label(data_name, app_env):
    at = new_app()
    at.session_state["model"] = {"scenario": "text", "options": {"data": f"/tmp/{data_name}"}, "train": {}}
    at.run()
    html = " ".join(m.value for m in at.sidebar.markdown)
    assert "<img" not in html and "<script" not in html and "<b>bold" not in html
    assert "&gt;" in html or "&lt;" in html


def test_every_unsafe_html_call_site_is_known():
    """Each ``unsafe_allow_html=True`` in ui/, pages/ and app.py is one whose dynamic parts are escaped (or
    constant); a new one must be added here after checking it."""
    known = {("ui/state.py", "css"), ("ui/views.py", "gemini-side"), ("pages/5_Report.py", "gemini-headline"),
             ("pages/0_Present.py", "gemini-q")}
    found = set()
    for file in [ROOT / "app.py", *(ROOT / "ui").glob("*.py"), *(ROOT / "pages").glob("*.py")]:
        text = file.read_text(encoding="utf-8")
        for match in re.finditer(r"unsafe_allow_html=True", text):
            before = text[max(0, match.start() - 400):match.start()]
            tag = next((t for k, t in known if k == str(file.relative_to(ROOT)) and t in before), None)
            found.add((str(file.relative_to(ROOT)), tag))
    assert found == known, found


# -- 10. a corrupt or unreadable store is reported before any training starts ------------------------------
def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a sqlite database" * 100)


def _folder(path: Path) -> None:
    path.mkdir()


STORE_PAGES = [
    ("overview-demo-garbage", None, "demo_start", _garbage, "run store"),
    ("model-train-garbage", MODEL, "m_train", _garbage, "run store"),
    ("sweep-start-garbage", "pages/2_Sweep.py", "sw_start", _garbage, "run store"),
    ("sensitivity-garbage", "pages/6_Sensitivity.py", "sn_start", _garbage, "run store"),
    ("model-train-folder", MODEL, "m_train", _folder, "run store"),
]


@pytest.mark.parametrize("case_id, page, button, make, message", STORE_PAGES, ids=[c[0] for c in STORE_PAGES])
def test_damaged_store_is_reported_and_no_job_starts(case_id, page, button, make, message, app_env):
    from ui.state import registry

    baselines = sorted(p.name for p in (app_env / "baselines").iterdir())
    make(app_env / "gemini.sqlite")
    at = new_app(page)
    at.button(key=button).click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error if message in e.value]
    assert len(errors) == 1, [e.value for e in at.error]
    assert "\n" not in errors[0]
    assert registry().all() == []  # no job was started, so nothing trained
    assert sorted(p.name for p in (app_env / "baselines").iterdir()) == baselines


# -- 2. typed and restored paths stay inside the home and GEMINI_DATA_ROOTS ---------------------------------------
OUTSIDE = "outside the folders this dashboard may read"


def _outside_csv(app_env) -> Path:
    """A CSV beside the test's folders, in none of the typed-path roots (its column names must never show)."""
    folder = app_env.parent.parent / f"outside-{app_env.parent.name}"
    folder.mkdir(exist_ok=True)
    path = folder / "secret.csv"
    path.write_text("SECRETCOLUMN_do_not_show,another_secret\n" + "x,1\n" * 20)
    return path


def _page_text(at) -> str:
    parts = [e.value for e in [*at.error, *at.warning, *at.info, *at.caption, *at.markdown, *at.success]]
    return " ".join(str(p) for p in parts)


@pytest.mark.parametrize("field", ["folder", "text-etc-passwd", "text-outside-csv"])
def test_model_page_llm_paths_follow_the_roots_rule(field, app_env):
    """The LLM section's model folder and evaluation text file are typed paths like any other: refused
    outside the roots in one line, with the file never read (no column name of it shown)."""
    at = new_app(MODEL)
    at.selectbox(key="m_scenario").set_value("llm").run()
    if field == "folder":
        at.radio(key="m_llm_source").set_value("a local folder (hf:<dir>)").run()
        at.text_input(key="m_llm_dir").set_value("/etc").run()
    else:
        at.radio(key="m_llm_text").set_value("my text file").run()
        typed = "/etc/passwd" if field == "text-etc-passwd" else str(_outside_csv(app_env))
        at.text_input(key="m_llm_data").set_value(typed).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and OUTSIDE in errors[0] and "\n" not in errors[0], errors
    assert at.button(key="m_use").disabled
    assert "SECRETCOLUMN" not in _page_text(at) and "root:" not in _page_text(at)
    assert at.session_state["model"]["scenario"] == "digits"  # nothing adopted


def test_model_page_llm_paths_inside_the_roots_are_taken(app_env, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("Some text to score.\n" * 50)
    at = new_app(MODEL)
    at.selectbox(key="m_scenario").set_value("llm").run()
    at.radio(key="m_llm_text").set_value("my text file").run()
    at.text_input(key="m_llm_data").set_value(str(text)).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert not at.button(key="m_use").disabled


def test_export_page_folder_name_too_long_is_one_line(app_env, seeded):
    at = new_app(EXPORT)
    at.text_input(key="x_folder").set_value("a" * 300).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "\n" not in errors[0] and "too long" in errors[0], errors
    assert "a" * 100 not in errors[0]  # the name is not repeated in full
    assert at.button(key="x_export").disabled  # the button stays, disabled
    assert not list((app_env / "exports").glob("aaa*"))


def _state(app_env, blob) -> None:
    (app_env / "ui_state.json").write_bytes(blob if isinstance(blob, bytes) else json.dumps(blob).encode())


RESTORED_OUTSIDE = [
    ("llm-hf-folder", {"version": 1, "model": {"scenario": "llm", "options": {"model": "hf:/etc"}}}, "saved model"),
    ("classifier-hf-folder", {"version": 1, "model": {"scenario": "hf:/etc", "options": {}}}, "saved model"),
    ("model-form-hf-folder", {"version": 1, "model_form": {"m_scenario": "hf", "m_hf_source": "/etc"}},
     "saved model form"),
    ("llm-text-outside", {"version": 1, "model": {"scenario": "llm", "options": {"data": "/etc/passwd"}}},
     "saved model"),
]


@pytest.mark.parametrize("case_id, state, entry", RESTORED_OUTSIDE, ids=[c[0] for c in RESTORED_OUTSIDE])
def test_restored_paths_outside_the_roots_are_dropped_with_a_notice(case_id, state, entry, app_env):
    """A ui_state.json naming a folder outside the roots is not adopted: one warning, the default model, and
    nothing the Sweep page would start on it."""
    _state(app_env, state)
    at = new_app()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning if "ui_state.json" in w.value]
    assert len(warnings) == 1 and f"the {entry} was dropped" in warnings[0] and OUTSIDE in warnings[0], warnings
    assert "\n" not in warnings[0]
    assert at.session_state["model"]["scenario"] == "digits"
    at.switch_page("pages/2_Sweep.py").run()
    assert not at.exception, at.exception
    assert at.session_state["model"]["scenario"] == "digits"
    at.switch_page(MODEL).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="m_scenario").value != "hf" or not at.text_input(key="m_hf_source").value


DAMAGED_STATES = [
    ("nested-arrays", b'{"version": 1, "model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("nested-objects", b'{"version": 1, "sweep_form": ' + b'{"a": ' * 20_000 + b"1" + b"}" * 20_000 + b"}"),
    ("over-the-size-cap", b'{"version": 1, "pad": "' + b"x" * (300 * 1024) + b'"}'),
    ("not-json", b"{this is not json"),
]


@pytest.mark.parametrize("case_id, blob", DAMAGED_STATES, ids=[c[0] for c in DAMAGED_STATES])
def test_a_damaged_state_file_is_set_aside_and_replaced(case_id, blob, app_env):
    """A damaged ui_state.json (too deep, too big, not JSON) breaks no page: it is kept aside under another
    name, said in one line once, and a fresh state is written in its place."""
    _state(app_env, blob)
    at = new_app()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning if "ui_state.json" in w.value]
    assert len(warnings) == 1 and "kept aside as" in warnings[0] and "\n" not in warnings[0], warnings
    aside = [p for p in app_env.iterdir() if p.name.startswith("ui_state.json.damaged-")]
    assert len(aside) == 1 and aside[0].read_bytes() == blob
    assert aside[0].name in warnings[0]
    fresh = json.loads((app_env / "ui_state.json").read_text())
    assert fresh["version"] == 1
    for page in ("pages/2_Sweep.py", MODEL, "pages/3_History.py"):
        at.switch_page(page).run()
        assert not at.exception, at.exception
    import streamlit as st

    st.cache_resource.clear()  # a restart reads the new file: nothing to say
    again = new_app()
    assert not [w.value for w in again.warning if "ui_state.json" in w.value]


# -- 8. a read-only home: the pages that read work, a job that would write says so before it starts ----------------
def test_read_only_home_reads_and_refuses_jobs_in_one_line(app_env, seeded, monkeypatch):
    from tests.engine.untrusted_support import read_only_home
    from ui.state import registry

    read_only_home(app_env, monkeypatch)
    at = new_app("pages/5_Report.py")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    at.switch_page("pages/3_History.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    at.switch_page("pages/2_Sweep.py").run()
    at.button(key="sw_start").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "cannot be written" in errors[0] and "read-only" in errors[0], errors
    assert "move it aside" not in errors[0]
    assert registry().all() == []  # nothing trained, nothing started


def test_a_wide_upload_is_one_line_on_the_model_page(app_env):
    """A table far wider than any model input is refused from its first line, before its preview is parsed."""
    data = (",".join(f"c{i}" for i in range(20_001)) + "\n" + ",".join("1" for _ in range(20_001)) + "\n").encode()
    at = new_app(MODEL)
    at.selectbox(key="m_scenario").set_value("tabular").run()
    at.file_uploader(key="m_upload").set_value(("wide.csv", data, "text/csv")).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "has 20,001 columns; the limit is 10,000" in errors[0], errors
    assert at.button(key="m_use").disabled
