"""Shared fixtures: an isolated home folder for the whole session and a cached digits baseline."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (tests may read it; the product never does)."""
    env = os.environ.get("GEMINI_SHARED_DATA")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory) -> Path:
    """Every test writes under a temporary GEMINI_HOME, never ./gemini_runs."""
    home = tmp_path_factory.mktemp("gemini_home")
    previous = os.environ.get("GEMINI_HOME")
    os.environ["GEMINI_HOME"] = str(home)
    shared_cache = os.environ.pop("GEMINI_CACHE", None)  # the cache follows each test's home (<home>/cache)
    yield home
    if shared_cache is not None:
        os.environ["GEMINI_CACHE"] = shared_cache
    if previous is None:
        os.environ.pop("GEMINI_HOME", None)
    else:
        os.environ["GEMINI_HOME"] = previous


@pytest.fixture(scope="session")
def digits():
    """(scenario, baseline) for digits, trained once per test session (~3 s)."""
    from gemini_core.scenarios import get_scenario
    from gemini_core.training.baseline import get_baseline

    scenario = get_scenario("digits")
    return scenario, get_baseline(scenario)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is not present beside this checkout")
    return path


def pytest_collection_modifyitems(config, items):
    """Markers by place: tests under e2e/ drive a browser; CUDA tests need a GPU."""
    for item in items:
        path = str(item.fspath)
        if "/e2e/" in path:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.flaky(reruns=2, reruns_delay=2))  # timing races in a live browser
        if path.endswith("test_cuda.py"):
            item.add_marker(pytest.mark.gpu)
