"""Export page: export the chosen point in the background, reload check, zip that reloads, CSV, charts."""
import io
import zipfile

import pytest

from gemini_core.checkpoint import archive as checkpoint_archive

try:
    from tests.app.test_app_support import app_env, media_mgr, new_app, seed_run, seed_template, seeded, wait_job  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, media_mgr, new_app, seed_run, seed_template, seeded, wait_job  # noqa: F401

PAGE = "pages/4_Export.py"


def test_export_chosen_point_reload_check_and_downloads(app_env, seeded, media_mgr, tmp_path):
    from gemini_core.checkpoint import load as export
    records = seeded
    point = next(r for r in records if r["config"]["bits"] == 8 and r["config"]["prune_ratio"] == 0.5)
    at = new_app()
    at.session_state["selected_point_id"] = point["point_id"]
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert f"Point #{point['point_id']}" in at.markdown[0].value or any(
        f"#{point['point_id']}" in m.value for m in at.markdown)
    labels = [m.label for m in at.metric]
    assert "MACs (estimate)" in labels and "Ideal size (estimate)" in labels
    at.button(key="x_export").click().run()
    job = wait_job(at, "export", timeout=180)
    assert job.state == "done", job.snapshot()
    path = job.result["path"]
    assert str(app_env / "exports") in path and path.endswith(f"point-{point['point_id']}")
    texts = [s.value for s in at.success]
    assert any("accuracy reproduced" in t for t in texts), texts
    # the folder now holds the export just made: no warning about "an export" already there
    assert not any("already holds an export" in w.value for w in at.warning)
    assert any("holds the export just made" in c.value for c in at.caption)
    assert any("ideal size (estimate)" in i.value for i in at.info)

    blob = media_mgr(at.download_button(key="x_zip"))
    assert zipfile.ZipFile(io.BytesIO(blob)).namelist()
    (tmp_path / "x.zip").write_bytes(blob)
    model = export.load(tmp_path / "x.zip") if _zip_loads(export) else None
    if model is None:  # the loader takes folders: unzip first
        zipfile.ZipFile(io.BytesIO(blob)).extractall(tmp_path / "unz")
        model = export.load(next((tmp_path / "unz").iterdir()))
    assert model.gemini_recipe["record"]["accuracy"] == pytest.approx(point["accuracy"])

    csv = media_mgr(at.download_button(key="x_dl_csv")).decode()
    assert csv.splitlines()[0].startswith("point_id,") and len(csv.splitlines()) == 1 + len(records)
    html = media_mgr(at.download_button(key="x_dl_html")).decode()
    assert "plotly" in html.lower() and "<html>" in html.lower()


def _zip_loads(export) -> bool:
    import inspect
    return "zip" in (inspect.getdoc(checkpoint_archive._export_root) or "").lower()


def test_export_from_history_without_a_session_choice(seeded):
    records = seeded
    at = new_app(PAGE)
    assert at.radio(key="x_source").value == "a point from the history"
    assert at.selectbox(key="x_run").value == records[0]["run_id"]
    pid = at.selectbox(key="x_point").value
    assert pid in {r["point_id"] for r in records}
    assert at.session_state["selected_point_id"] == pid


def test_png_chart_download_or_clear_message(seeded, media_mgr):
    from gemini_core.charts.images import png_unavailable_reason

    at = new_app(PAGE)
    reason = png_unavailable_reason()
    if reason:
        assert any("PNG unavailable" in c.value for c in at.caption)
        return
    png = media_mgr(at.download_button(key="x_dl_png"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_check_a_checkpoint_folder_zip_and_tampered(app_env, seeded):
    """'Check a checkpoint': a good export reproduces its accuracy; a tampered one names the checksum; a
    zip from a colleague is verified the same way; nothing in the store changes."""
    from gemini_core.paths import exports_dir
    from gemini_core.results.store import Store
    from gemini_core.workflows import export

    store = Store()
    point = next(r for r in seeded if r["config"]["bits"] == 8)
    good = export.export_point(store, point["point_id"], exports_dir() / "good")
    tampered = export.export_point(store, point["point_id"], exports_dir() / "tampered")
    weights = tampered / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    before = [(r["run_id"], r["points_ok"]) for r in store.runs()]

    at = new_app(PAGE)
    assert set(at.selectbox(key="x_check_folder").options) == {"good", "tampered"}
    assert at.button(key="x_check").disabled                     # nothing chosen yet
    at.selectbox(key="x_check_folder").set_value("good").run()
    at.button(key="x_check").click().run()
    job = wait_job(at, "check", timeout=180)
    assert job.state == "done", job.snapshot()
    assert any("checksums match" in s.value and "reproduced" in s.value for s in at.success), \
        [s.value for s in at.success]
    assert job.result["check"]["accuracy"] == pytest.approx(point["accuracy"])

    at.selectbox(key="x_check_folder").set_value("tampered").run()
    at.button(key="x_check").click().run()
    job = wait_job(at, "check", timeout=180)
    assert job.state == "failed"
    assert any("checksum mismatch for model.safetensors" in e.value for e in at.error), [e.value for e in at.error]
    assert not any("details (for a bug report)" in x.label for x in at.expander)   # a user error, not a bug

    at.selectbox(key="x_check_folder").set_value(None)
    at.file_uploader(key="x_check_zip").set_value(("from-a-colleague.zip", checkpoint_archive.zip_export(good),
                                                   "application/zip")).run()
    at.button(key="x_check").click().run()
    job = wait_job(at, "check", timeout=180)
    assert job.state == "done", job.snapshot()
    assert str(app_env / "uploads") in job.result["path"]

    notes = io.BytesIO()
    with zipfile.ZipFile(notes, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")
    at.file_uploader(key="x_check_zip").set_value(("notes.zip", notes.getvalue(), "application/zip")).run()
    at.button(key="x_check").click().run()
    job = wait_job(at, "check", timeout=60)
    assert job.state == "failed" and any("not a zip of a gemini export" in e.value for e in at.error)
    assert not at.exception
    assert [(r["run_id"], r["points_ok"]) for r in Store().runs()] == before
