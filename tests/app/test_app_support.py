"""Fixtures and helpers for the dashboard's AppTest tests (tests/app/test_app_*.py). No tests in here.

Each test gets its own GEMINI_HOME (monkeypatch.setenv) holding a copy of the session's digits
baseline, so no test trains from scratch; Streamlit's caches are cleared and every background
job is cancelled and joined after each test.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.conftest import shared_data_dir

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
APP = str(ROOT / "app.py")
SMALL_GRID = {"sw_methods": ["l1-structured"], "sw_ratios": [0.0, 0.5], "sw_bits": [32, 8], "sw_gran": ["per-channel"],
              "sw_exec": ["dense"], "sw_ft": [20]}


def _registry():
    from ui.state import registry

    return registry()


def _stop_jobs() -> None:
    try:
        jobs = _registry().all()
    except Exception:
        return
    for job in jobs:
        job.cancel()
    for job in jobs:
        job.join(60)


@pytest.fixture(autouse=True)
def app_env(tmp_path, monkeypatch, digits):
    """Fresh home (with the trained digits baseline copied in) and empty Streamlit caches."""
    _stop_jobs()
    st.cache_resource.clear()
    st.cache_data.clear()
    home = tmp_path / "home"
    _, baseline = digits
    shutil.copytree(baseline.path, home / "baselines" / baseline.path.name)
    monkeypatch.setenv("GEMINI_HOME", str(home))
    # Typed paths may only lead inside the home or GEMINI_DATA_ROOTS: tests type files from their
    # tmp folder and ../shared/data.
    # (where ../shared/data is a link or GEMINI_SHARED_DATA points elsewhere, its real place is a root too)
    roots = [str(tmp_path), str(ROOT.parent / "shared")]
    shared = shared_data_dir()
    if shared is not None:
        roots.append(str(shared.resolve()))
    monkeypatch.setenv("GEMINI_DATA_ROOTS", os.pathsep.join(roots))
    monkeypatch.chdir(ROOT)
    yield home
    _stop_jobs()
    st.cache_resource.clear()
    st.cache_data.clear()


def new_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def decode(v):
    """plotly>=6 stores numeric arrays as {'dtype', 'bdata'(, 'shape')}: decode them to numpy."""
    if isinstance(v, dict):
        if "bdata" in v and "dtype" in v:
            arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
            if "shape" in v:
                arr = arr.reshape([int(s) for s in str(v["shape"]).split(",")])
            return arr
        return {k: decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode(x) for x in v]
    return v


def chart_specs(at) -> list[dict]:
    return [decode(json.loads(el.proto.spec)) for el in at.get("plotly_chart")]


def chart_by_title(at, text: str) -> dict:
    for spec in chart_specs(at):
        title = spec.get("layout", {}).get("title", {})
        title = title.get("text", "") if isinstance(title, dict) else str(title)
        if text in title:
            return spec
    raise AssertionError(f"no chart titled {text!r}; have {[s.get('layout', {}).get('title') for s in chart_specs(at)]}")


def point_count(spec: dict) -> int:
    """Measured points in a sweep chart (the Pareto ring and chosen-star traces are overlays)."""
    return sum(len(t.get("x", [])) for t in spec["data"] if t.get("name") not in ("Pareto front", "chosen point", "recommended"))


def wait_job(at, kind: str, timeout: float = 120.0, until=None):
    """Poll like the fragment's timer would: sleep, rerun, until the job of ``kind`` ends (or ``until(job)``)."""
    deadline = time.time() + timeout
    job = None
    while time.time() < deadline:
        time.sleep(0.2)
        at.run()
        assert not at.exception, at.exception
        job = _registry().latest(kind)
        if job is not None and (until(job) if until else job.done):
            break
    else:
        raise AssertionError(f"{kind} job did not finish in {timeout}s: {job and job.snapshot()['message']}")
    at.run()
    return job


def wait_points(at, title: str, n: int, timeout: float = 60.0) -> dict:
    """Rerun until the chart titled ``title`` shows at least ``n`` points (live figures are throttled)."""
    deadline = time.time() + timeout
    while True:
        spec = chart_by_title(at, title)
        if point_count(spec) >= n or time.time() > deadline:
            return spec
        time.sleep(0.3)
        at.run()


def seed_run(spec_kwargs: dict | None = None, name: str = "seeded") -> list[dict]:
    """A real sweep on digits through the engine (not the UI), stored in this test's home."""
    from gemini_core.kinds.classifier.spec import SweepSpec
    from gemini_core.results.store import Store
    from gemini_core.scenarios import get_scenario
    from gemini_core.training.baseline import get_baseline
    from gemini_core.workflows.sweep import run_sweep

    scenario = get_scenario("digits")
    baseline = get_baseline(scenario)
    assert baseline.cached
    spec = SweepSpec(**(spec_kwargs or dict(prune_methods=("l1-structured",), prune_ratios=(0.0, 0.5), bits=(32, 8),
                                            finetune_steps=(20,))))
    return list(run_sweep(scenario, spec, store=Store(), name=name, baseline=baseline))


@pytest.fixture(scope="session")
def seed_template(tmp_path_factory, digits):
    """One real 4-point digits sweep per test session, in its own home (copied into each test's home)."""
    home = tmp_path_factory.mktemp("ui_seed_home")
    _, baseline = digits
    shutil.copytree(baseline.path, home / "baselines" / baseline.path.name)
    previous = os.environ.get("GEMINI_HOME")
    os.environ["GEMINI_HOME"] = str(home)
    try:
        records = seed_run(name="seeded")
    finally:
        if previous is None:
            os.environ.pop("GEMINI_HOME", None)
        else:
            os.environ["GEMINI_HOME"] = previous
    return home, records


@pytest.fixture
def seeded(app_env, seed_template):
    """This test's home holds the seeded run (point ids as in the returned records)."""
    home, records = seed_template
    for f in home.glob("gemini.sqlite*"):
        shutil.copy2(f, app_env / f.name)
    return records


@pytest.fixture
def media_mgr(monkeypatch):
    """Capture AppTest's MediaFileManager: deferred download_button data is produced through it."""
    import streamlit.testing.v1.app_test as app_test_mod
    from streamlit.runtime.media_file_manager import MediaFileManager

    box = {}

    class Capturing(MediaFileManager):
        def __init__(self, storage):
            super().__init__(storage)
            box["mgr"] = self

    monkeypatch.setattr(app_test_mod, "MediaFileManager", Capturing)

    def fetch(button) -> bytes:
        mgr = box["mgr"]
        if button.proto.deferred_file_id:
            url = mgr.execute_deferred(button.proto.deferred_file_id)
        else:
            url = button.proto.url
        return mgr._storage.get_file(Path(url).name).content

    return fetch
