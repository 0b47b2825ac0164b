"""A sweep killed mid-run loses no finished point and leaves the database readable."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from tests.conftest import REPO

SWEEP = ["-m", "gemini_core", "sweep", "--prune-method", "l1-structured", "--prune-ratios", "0,0.5",
         "--bits", "32,8,4", "--execution", "dense,sparse", "--finetune-steps", "10", "--epochs", "2",
         "--batch-size", "4"]


def _count_ok(db_path) -> int:
    if not db_path.exists():
        return 0
    try:
        with sqlite3.connect(db_path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM points WHERE status='ok'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_sigkill_mid_sweep_then_resume(tmp_path):
    env = {**os.environ, "GEMINI_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    db_path = tmp_path / "home" / "gemini.sqlite"
    proc = subprocess.Popen([sys.executable, *SWEEP], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while _count_ok(db_path) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = _count_ok(db_path)
    assert 3 <= killed_at < 13, f"kill came too late or too early ({killed_at} points)"
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    done = subprocess.run([sys.executable, *SWEEP], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in done.stdout.splitlines()]
    reused = [r for r in records if r.get("reused")]
    measured = [r for r in records if not r.get("reused")]
    assert len(records) == 13  # 12 grid points + the fair control
    assert len(reused) >= killed_at and len(reused) + len(measured) == 13
    assert _count_ok(db_path) == 13
    print(f"kill-and-resume: {killed_at} points stored at SIGKILL, integrity ok; resume reused {len(reused)}, "
          f"measured {len(measured)}, total {_count_ok(db_path)}")
