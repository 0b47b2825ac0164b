"""Time estimates learned from this machine's measured seconds per point and per pruning setting."""
from __future__ import annotations

try:
    from tests.app.test_app_support import app_env, new_app  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, new_app  # noqa: F401

from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.paths import store_path
from gemini_core.results.store import Store
from ui.estimates import estimate_range, format_range, learned_costs


def _store_measured(n=6, point_s=2.0, prune_s=10.0):
    store = Store(store_path())
    store.ensure_run("timed", "timed", "digits", "b", {})
    for i in range(n):
        ratio = 0.5 if i % 2 else 0.0
        store.add_point("timed", "b", f"k{i}", {
            "run_id": "timed", "label": f"p{i}", "status": "ok", "seconds": point_s + 0.1 * i,
            "prune_seconds": prune_s if ratio else 0.0, "accuracy": 0.9, "latency_ms_p50": 1.0, "size_bytes": 10,
            "config": {"prune_method": "l1-structured" if ratio else "none", "prune_ratio": ratio,
                       "finetune_steps": 60, "bits": 32 if i < 3 else 8, "execution": "dense"}})


def test_prior_until_measured_then_learned_range():
    spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.0, 0.5), bits=(32, 8), finetune_steps=(60,))
    low, high, source = estimate_range(spec, "digits")
    assert "planning figures" in source and low < high
    assert learned_costs("digits") is None
    _store_measured()
    learned = learned_costs("digits")
    assert learned["n"] == 6 and 2.0 <= learned["point"][0] <= learned["point"][1] <= 2.5
    assert learned["setting"] == (10.0, 10.0)
    low, high, source = estimate_range(spec, "digits")
    assert "6 points measured on this machine" in source
    # 4 grid points + the fair control at 2.1-2.4 s each, + one or two recovery settings at 10 s
    assert spec.n_points() == 5
    assert 5 * 2.0 + 10 <= low <= high <= 5 * 2.5 + 20
    assert format_range(low, high).endswith(" s") and "-" in format_range(low, high)


def test_sweep_page_shows_the_learned_range():
    _store_measured()
    at = new_app("pages/2_Sweep.py")
    info = [i.value for i in at.info if "points**" in i.value][0]
    assert "measured on this machine for digits" in info and "estimate" in info
