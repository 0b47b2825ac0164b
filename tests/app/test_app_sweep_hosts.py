"""Sweep page: points measured on several hosts (a Ray sweep) can be filtered by host; the hover names it."""
try:
    from tests.app.test_app_support import app_env, chart_by_title, new_app, point_count  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, chart_by_title, new_app, point_count  # noqa: F401

from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.results.store import Store
from gemini_core.workflows.sweep import run_sweep


def test_points_from_two_hosts_get_a_host_filter(digits):
    scenario, baseline = digits
    store = Store()  # the test's GEMINI_HOME, which the page reads
    records = list(run_sweep(scenario, SweepSpec(bits=(32, 8), batch_size=8), store=store,
                             latency_kwargs={"min_runs": 3, "min_seconds": 0.0}, baseline=baseline))
    assert len(records) == 2
    # The second point as another machine of a cluster would have stored it.
    moved = {k: v for k, v in records[1].items() if k not in ("point_id", "run_id", "point_key", "baseline_key")}
    store.add_point(records[1]["run_id"], baseline.key, records[1]["point_key"], {**moved, "host": "node-b"})

    at = new_app("pages/2_Sweep.py")
    hosts = at.multiselect(key="sweep_hosts")
    assert sorted(hosts.value) == sorted([records[0]["host"], "node-b"])
    chart = chart_by_title(at, "Accuracy vs latency")
    assert point_count(chart) == 2 and "host: " in str(chart["data"][1]["customdata"])
    hosts.set_value([records[0]["host"]]).run()
    assert not at.exception, at.exception
    assert point_count(chart_by_title(at, "Accuracy vs latency")) == 1
