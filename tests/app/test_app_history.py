"""History page: every run listed, fronts of two runs overlaid, rename, delete with confirmation."""
try:
    from tests.app.test_app_support import app_env, chart_by_title, new_app, seed_run, seed_template, seeded  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, chart_by_title, new_app, seed_run, seed_template, seeded  # noqa: F401

PAGE = "pages/3_History.py"


def test_history_overlay_rename_delete(seeded):
    first = seeded
    from gemini_core.results.store import Store
    Store().rename_run(first[0]["run_id"], "first run")
    second = seed_run(dict(bits=(32, 16)), name="second run")  # reuses the reference: one new point
    at = new_app(PAGE)
    table = at.dataframe[0].value
    assert set(table["name"]) == {"first run", "second run"}
    assert set(at.multiselect(key="h_compare").value) == {first[0]["run_id"], second[0]["run_id"]}
    overlay = chart_by_title(at, "Pareto fronts compared")
    names = [t["name"] for t in overlay["data"]]
    assert "first run front" in names and "second run front" in names

    target = second[0]["run_id"]
    at.selectbox(key="h_target").set_value(target).run()
    at.text_input(key=f"h_name_{target}").set_value("renamed run").run()
    at.button(key="h_rename").click().run()
    assert "Renamed" in at.success[0].value
    assert "renamed run" in set(at.dataframe[0].value["name"])

    at.button(key="h_delete").click().run()
    assert "cannot be undone" in at.warning[0].value
    at.button(key="h_delete_no").click().run()                 # changed my mind: nothing deleted
    assert len(at.dataframe[0].value) == 2
    at.button(key="h_delete").click().run()
    at.button(key="h_delete_yes").click().run()
    assert not at.exception, at.exception
    assert "Deleted" in at.success[0].value
    assert list(at.dataframe[0].value["name"]) == ["first run"]
    from gemini_core.results.store import Store
    assert Store().points(target) == []
