"""The run history: SQLite in the home folder, one row per run and per measured point.

Every point is committed the moment it exists (WAL journal, busy timeout), so a killed sweep
loses nothing it finished and two writers (CLI and dashboard) can share the file.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from gemini_core.errors import GeminiError
from gemini_core.paths import store_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scenario TEXT NOT NULL,
    baseline_key TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    baseline_json TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'running',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS points (
    point_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    baseline_key TEXT NOT NULL,
    point_key TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    record_json TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (run_id, point_key)
);
CREATE INDEX IF NOT EXISTS points_by_baseline ON points (baseline_key, point_key);
CREATE TABLE IF NOT EXISTS analyses (
    analysis_id TEXT PRIMARY KEY,
    baseline_key TEXT NOT NULL,
    scenario TEXT NOT NULL,
    params_json TEXT NOT NULL,
    result_json TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS analyses_by_baseline ON analyses (baseline_key, updated_at);
"""


class Store:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_dir():
            raise GeminiError(f"the run store {self.path} is a folder, not a SQLite file")
        with self._connect() as db:
            db.executescript(SCHEMA)

    def check(self) -> "Store":
        """GeminiError when the store file is damaged (SQLite's quick_check), before any work relies on it."""
        with self._connect() as db:
            rows = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            raise GeminiError(f"the run store {self.path} is damaged ({rows[0]}); move it aside to start a new one")
        return self

    @contextmanager
    def _connect(self):
        try:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise GeminiError(f"cannot open the run store {self.path}: {exc}") from None
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        except sqlite3.DatabaseError as exc:
            raise GeminiError(f"the run store {self.path} is unreadable ({exc}); move it aside to start a new "
                              "one") from None
        finally:
            db.close()

    # -- runs -------------------------------------------------------------------------------
    def ensure_run(self, run_id: str, name: str, scenario: str, baseline_key: str, spec: dict,
                   baseline: dict | None = None) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (run_id, name, scenario, baseline_key, spec_json, baseline_json, status,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)"
                " ON CONFLICT(run_id) DO UPDATE SET status='running', updated_at=excluded.updated_at,"
                " baseline_json=excluded.baseline_json",
                (run_id, name, scenario, baseline_key, json.dumps(spec, sort_keys=True),
                 json.dumps(baseline or {}), now, now),
            )

    def set_status(self, run_id: str, status: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE runs SET status=?, updated_at=? WHERE run_id=?", (status, time.time(), run_id))

    def rename_run(self, run_id: str, name: str) -> None:
        name = name.strip()
        if not name:
            raise GeminiError("a run name cannot be empty")
        with self._connect() as db:
            if db.execute("UPDATE runs SET name=? WHERE run_id=?", (name, run_id)).rowcount == 0:
                raise GeminiError(f"no run {run_id!r}")

    def delete_run(self, run_id: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM points WHERE run_id=?", (run_id,))
            if db.execute("DELETE FROM runs WHERE run_id=?", (run_id,)).rowcount == 0:
                raise GeminiError(f"no run {run_id!r}")

    def runs(self) -> list[dict]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT r.*, (SELECT COUNT(*) FROM points p WHERE p.run_id=r.run_id AND p.status='ok') AS points_ok,"
                " (SELECT COUNT(*) FROM points p WHERE p.run_id=r.run_id AND p.status='failed') AS points_failed"
                " FROM runs r ORDER BY created_at DESC"
            ).fetchall()
        out = []
        for row in rows:
            item = dict(row)
            item["spec"] = json.loads(item.pop("spec_json"))
            item["baseline"] = json.loads(item.pop("baseline_json"))
            out.append(item)
        return out

    def get_run(self, run_id: str) -> dict:
        for run in self.runs():
            if run["run_id"] == run_id:
                return run
        raise GeminiError(f"no run {run_id!r}; `python -m gemini_core runs` lists them")

    # -- points -----------------------------------------------------------------------------
    def add_point(self, run_id: str, baseline_key: str, point_key: str, record: dict, status: str = "ok",
                  error: str | None = None) -> int:
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO points (run_id, baseline_key, point_key, status, error, record_json, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, point_key) DO UPDATE SET"
                " status=excluded.status, error=excluded.error, record_json=excluded.record_json,"
                " created_at=excluded.created_at",
                (run_id, baseline_key, point_key, status, error, json.dumps(record), time.time()),
            )
            row = db.execute("SELECT point_id FROM points WHERE run_id=? AND point_key=?",
                             (run_id, point_key)).fetchone()
            db.execute("UPDATE runs SET updated_at=? WHERE run_id=?", (time.time(), run_id))
        return int(row["point_id"]) if row else int(cur.lastrowid)

    def find_point(self, baseline_key: str, point_key: str) -> dict | None:
        """A measured (ok) point for this baseline and point key, in any run."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM points WHERE baseline_key=? AND point_key=? AND status='ok'"
                " ORDER BY created_at DESC LIMIT 1", (baseline_key, point_key)).fetchone()
        return _point(row) if row else None

    def points(self, run_id: str, include_failed: bool = True) -> list[dict]:
        query = "SELECT * FROM points WHERE run_id=?" + ("" if include_failed else " AND status='ok'")
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY point_id", (run_id,)).fetchall()
        return [_point(row) for row in rows]

    def get_point(self, point_id: int) -> dict:
        with self._connect() as db:
            row = db.execute("SELECT * FROM points WHERE point_id=?", (int(point_id),)).fetchone()
        if row is None:
            raise GeminiError(f"no point {point_id}")
        return _point(row)

    # -- sensitivity analyses (sensitivity.py) ---------------------------------------------------
    def save_analysis(self, analysis_id: str, baseline_key: str, scenario: str, params: dict, result: dict,
                      status: str) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO analyses (analysis_id, baseline_key, scenario, params_json, result_json, status,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(analysis_id) DO UPDATE SET"
                " result_json=excluded.result_json, status=excluded.status, updated_at=excluded.updated_at",
                (analysis_id, baseline_key, scenario, json.dumps(params, sort_keys=True), json.dumps(result),
                 status, now, now))

    def get_analysis(self, analysis_id: str) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM analyses WHERE analysis_id=?", (analysis_id,)).fetchone()
        return _analysis(row) if row else None

    def analyses(self, baseline_key: str | None = None) -> list[dict]:
        """Stored analyses, newest first (all, or of one baseline)."""
        where = " WHERE baseline_key=?" if baseline_key else ""
        query = "SELECT * FROM analyses" + where + " ORDER BY updated_at DESC"
        with self._connect() as db:
            rows = db.execute(query, (baseline_key,) if baseline_key else ()).fetchall()
        return [_analysis(row) for row in rows]

    def integrity_ok(self) -> bool:
        with self._connect() as db:
            return db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _point(row) -> dict:
    record = json.loads(row["record_json"])
    record.update({"point_id": row["point_id"], "run_id": row["run_id"], "point_key": row["point_key"],
                   "status": row["status"], "error": row["error"], "baseline_key": row["baseline_key"]})
    return record


def _analysis(row) -> dict:
    return {"analysis_id": row["analysis_id"], "baseline_key": row["baseline_key"], "scenario": row["scenario"],
            "params": json.loads(row["params_json"]), "result": json.loads(row["result_json"]),
            "status": row["status"], "created_at": row["created_at"], "updated_at": row["updated_at"]}
