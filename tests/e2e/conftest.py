"""Browser tests: `streamlit run app.py` in a subprocess, driven by Playwright with Debian's Chromium.

Skipped (with the reason) when Playwright or a Chromium binary is missing. Chromium is found at
$CHROMIUM, else /usr/bin/chromium, else on PATH; `scripts/test.sh` installs it with apt-get.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium_binary() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early with code {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200 and r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


def require_browser() -> None:
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    if chromium_binary() is None:
        pytest.skip("no Chromium binary (apt-get install chromium, or set $CHROMIUM): browser tests skipped")


@contextlib.contextmanager
def streamlit_server(base: Path):
    """`streamlit run app.py` on a free port with its own empty GEMINI_HOME under ``base``."""
    home, log = base / "home", base / "server.log"
    port = free_port()
    env = {**os.environ, "GEMINI_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--global.developmentMode", "false"]
    started = time.time()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield {"url": url, "started": started, "healthy_after": time.time() - started, "home": home, "log": log}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def server(tmp_path_factory):
    """A fresh server with its own empty GEMINI_HOME: the first-use experience (baseline not cached).

    Function-scoped so that a rerun after a timing race starts from an empty home again (a reused home
    already holds the demo points, and the live-growth check could never pass)."""
    require_browser()
    with streamlit_server(tmp_path_factory.mktemp("e2e_server")) as info:
        yield info


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_binary(), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    ctx.close()


@pytest.fixture
def fresh_server(tmp_path):
    """Another fresh server, for a test that needs the server's very first request."""
    require_browser()
    with streamlit_server(tmp_path) as info:
        yield info
