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
    known = {("ui/state.py", "css"), ("ui/views.py", "gemini-side"), ("pages/5_Report.py", "gemini-headline")}
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
