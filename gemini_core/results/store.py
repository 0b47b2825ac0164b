"""The run history: SQLite in the home folder, one row per run and per measured point.

Every point is committed the moment it exists (WAL journal, busy timeout), so a killed sweep
loses nothing it finished and two writers (CLI and dashboard) can share the file.

Every point is checked against the point record's schema (``record.PointRecord``) before it is written,
so a row is a whole, typed record or nothing.

Versions: the ``meta`` table holds the store's version (``STORE_VERSION``). A store written by an earlier
release (no ``meta`` table: version 1) is upgraded when it is opened, in one transaction: every point's
record gets ``schema_version``, ``kind`` and ``quality_metric`` and every run its ``kind``; a killed upgrade
leaves the store as it was. A store from a newer release is refused (its records may mean what this release
cannot know). A store that cannot be written is read as upgraded, in memory, and left as it is.

What goes wrong is told apart, because the advice differs: a read-only home or file (reading works; a write
says where and why), a full disk (free space), a lock held by another process (wait for it, or stop it), a
row whose JSON cannot be read (skipped, and named by its id, by ``damaged_rows_notice``); only a file that
is really damaged is "move it aside".
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from gemini_core.errors import GeminiError
from gemini_core.kinds import registry
from gemini_core.paths import store_path
from gemini_core.results.record import PointRecord, legacy_kind, upgrade_record

# What became of a run, the same words for every model kind: "running" while it is measured; "finished" when every
# point was tried (a failed point fails alone); "cancelled" when someone asked it to stop; "interrupted" when it
# ended otherwise (an error, or a process that died: its row still says "running").
RUN_STATUSES = ("running", "finished", "cancelled", "interrupted")

# The store's layout and what its records hold: version 2 added the meta table, runs.kind and
# schema_version / kind / quality_metric in every record (record version 2); version 1 is every store
# written before. A new record version is a new store version (its rows are upgraded on open).
STORE_VERSION = 2
# How long a write waits for another process's lock before it is reported as held (a sweep commits each
# point in milliseconds; a longer hold is another process's long transaction).
BUSY_TIMEOUT_S = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scenario TEXT NOT NULL,
    baseline_key TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    baseline_json TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'running',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    kind TEXT NOT NULL DEFAULT 'classifier'
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
    """``read_only``: open without writing anything (a store of an earlier version is upgraded in memory on
    every read). A store whose file or folder cannot be written is opened so too (``read_only_reason`` says
    why; a write then fails in one line saying it), and so is one that turns out not to be writable when it
    is upgraded (``notice`` says so)."""

    def __init__(self, path: str | Path | None = None, read_only: bool = False):
        self.path = Path(path) if path is not None else store_path()
        self.read_only = read_only
        self.read_only_reason: str | None = "it was opened read-only" if read_only else None
        self.upgrade_on_read = False  # an earlier version's store read without writing: records upgraded per read
        self.notice: str | None = None  # one line for the reader when the store is read that way
        self.immutable = False  # a read-only file system: SQLite cannot create the WAL index, reads the file as is
        self.skipped: dict[str, set] = {"point": set(), "run": set(), "analysis": set()}  # ids of damaged rows
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_dir():
            raise GeminiError(f"the run store {self.path} is a folder, not a SQLite file")
        if not read_only:
            reason = _unwritable(self.path)
            if reason is not None:
                if not self.path.is_file():
                    raise GeminiError(f"there is no run store at {self.path} and none can be created: {reason}; "
                                      "set GEMINI_HOME to a writable folder")
                self.read_only, self.read_only_reason = True, reason
        if self.read_only and not self.path.is_file():
            raise GeminiError(f"no run store at {self.path}")
        self._open()

    # -- versions ---------------------------------------------------------------------------
    def _open(self) -> None:
        """Create a new store, or bring an earlier version's up to this one; refuse a newer version's."""
        with self._connect() as db:
            version = self._version(db)
            if version == STORE_VERSION:
                return  # the common case: one read, nothing written
            self._refuse_newer(version)
            if version == 0 and self.read_only:
                raise GeminiError(f"the run store {self.path} is empty: there is nothing to read")
            if not self.read_only:
                try:
                    self._upgrade(db)
                    return
                except sqlite3.OperationalError as exc:
                    if not _is_read_only(exc):
                        raise
                    self.read_only = True  # a read-only file or folder: read it as it is, below
                    self.read_only_reason = f"SQLite refused to write it ({exc})"
            self.upgrade_on_read = True
            self.notice = (f"the run store {self.path} was written by an earlier version (store version "
                           f"{version}) and cannot be written here: it is read as version {STORE_VERSION} in "
                           "memory, the file stays as it is and nothing in it is lost")

    def _version(self, db) -> int:
        """0: no store yet; 1: a store from before the meta table; otherwise the meta table's version."""
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" in tables:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is not None:
                version = int(row[0]) if str(row[0]).isdigit() else 0
                if version < 1:
                    raise GeminiError(f"the run store {self.path} is damaged (its version is {row[0]!r}); move "
                                      "it aside to start a new one")
                return version
        return 1 if tables & {"runs", "points"} else 0

    def _refuse_newer(self, version: int) -> None:
        if version > STORE_VERSION:
            raise GeminiError(f"the run store {self.path} was written by a newer version of gemini (store version "
                              f"{version}); this version reads up to {STORE_VERSION} and cannot read it: update "
                              "gemini, or move the store aside to start a new one")

    def _upgrade(self, db) -> None:
        """Create the tables of a new store, or upgrade an earlier version's, in one transaction: a killed
        upgrade leaves the store as it was, and of two processes opening it at once one upgrades and the other
        then finds it done (the version is read again inside the transaction)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            version = self._version(db)
            self._refuse_newer(version)
            if version < STORE_VERSION:
                for statement in SCHEMA.split(";"):  # creates what is missing (all of a new store)
                    if statement.strip():
                        db.execute(statement)
                if version == 1:
                    _upgrade_from_1(db)
                db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT(key) DO UPDATE"
                           " SET value=excluded.value", (str(STORE_VERSION),))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def check(self) -> "Store":
        """GeminiError when the store file is damaged (SQLite's quick_check), before any work relies on it."""
        with self._connect() as db:
            rows = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            raise GeminiError(f"the run store {self.path} is damaged ({rows[0]}); move it aside to start a new one")
        return self

    def check_writable(self) -> "Store":
        """GeminiError saying where and why when the store is open read-only, before work that would write."""
        if self.read_only:
            raise GeminiError(f"the run store {self.path} cannot be written: {self.read_only_reason}; nothing was "
                              "written (reading works: runs, points, the report); set GEMINI_HOME to a writable "
                              "folder to save new runs")
        return self

    @contextmanager
    def _connect(self, write: bool = False):
        """A connection for one operation. ``write``: one that changes the store, refused at once (saying
        where and why) when the store is open read-only."""
        if write:
            self.check_writable()
        try:
            db = self._open_connection()
        except sqlite3.Error as exc:
            raise GeminiError(self._explain(exc)) from None
        try:
            yield db
        except sqlite3.DatabaseError as exc:
            raise GeminiError(self._explain(exc)) from None
        finally:
            db.close()

    def _open_connection(self):
        if not self.read_only:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
                db.execute("PRAGMA foreign_keys=ON")
            except BaseException:
                db.close()
                raise
            return db
        try:
            return self._read_only_connection(self.immutable)
        except sqlite3.OperationalError as exc:
            if self.immutable or _code(exc) != sqlite3.SQLITE_CANTOPEN:
                raise
        # A WAL store on a read-only file system: SQLite cannot create its index file (-shm), not even to
        # read. Read the file as it is (what a killed writer left in its -wal is not seen).
        self.immutable = True
        return self._read_only_connection(True)

    def _read_only_connection(self, immutable: bool):
        """Nothing is written, not even the journal mode; the first read (which opens the file) is done here."""
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")
        db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    def _explain(self, exc: sqlite3.Error) -> str:
        """One line for a SQLite failure, with the advice that fits its cause."""
        code = _code(exc)
        folder = self.path.parent
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return (f"the run store {self.path} is locked by another process (a sweep, an export or a dashboard "
                    f"writing to it) and was not released within {BUSY_TIMEOUT_S:g} s: wait for it to finish, or "
                    "stop it, then run this again; the store is not damaged")
        if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and 0 <= _free_bytes(folder) < 1 << 20):
            free = _free_bytes(folder)
            shown = f"{free / 2**20:.1f} MB free" if free >= 0 else "the free space could not be read"
            return (f"no space left on the disk of the run store {self.path} ({exc}; {shown} in {folder}): free "
                    "space there, then run this again; the store is not damaged and keeps what it had")
        if _is_read_only(exc) or (code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM)
                                  and _unwritable(self.path) is not None):
            reason = self.read_only_reason if self.read_only else _unwritable(self.path)
            return (f"the run store {self.path} cannot be written: {reason or exc}; nothing was written; set "
                    "GEMINI_HOME to a writable folder to save new runs")
        if code == sqlite3.SQLITE_CANTOPEN:
            return f"cannot open the run store {self.path} ({exc}): check that {folder} exists and can be read"
        if code == sqlite3.SQLITE_IOERR:
            return (f"the disk under the run store {self.path} reported an error ({exc}): check the disk, then run "
                    "this again")
        return f"the run store {self.path} is unreadable ({exc}); move it aside to start a new one"

    def damaged_rows_notice(self) -> str | None:
        """One line naming the rows skipped so far because their JSON cannot be read; None when there were none."""
        parts = []
        for what in ("point", "run", "analysis"):
            ids = sorted(self.skipped[what], key=str)
            if ids:
                shown = ", ".join(str(i) if what == "point" else repr(i) for i in ids[:20])
                more = f" and {len(ids) - 20} more" if len(ids) > 20 else ""
                parts.append(f"{what} id{'s' if len(ids) > 1 else ''} {shown}{more}")
        if not parts:
            return None
        return (f"the run store {self.path} has rows whose record cannot be read, skipped: {'; '.join(parts)} "
                "(the rest of the store reads as usual)")

    # -- runs -------------------------------------------------------------------------------
    def ensure_run(self, run_id: str, name: str, scenario: str, baseline_key: str, spec: dict,
                   baseline: dict | None = None, kind: str | None = None) -> None:
        """``kind``: the model kind of the run's points; until every caller passes it, the kind its spec or
        baseline names (``run_kind``)."""
        now = time.time()
        kind = kind or run_kind(spec, baseline)
        registry.kind_info(kind)  # an unknown kind is one line, before anything is written
        with self._connect(write=True) as db:
            db.execute(
                "INSERT INTO runs (run_id, name, scenario, baseline_key, spec_json, baseline_json, status,"
                " created_at, updated_at, kind) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)"
                " ON CONFLICT(run_id) DO UPDATE SET status='running', updated_at=excluded.updated_at,"
                " baseline_json=excluded.baseline_json",
                (run_id, name, scenario, baseline_key, json.dumps(spec, sort_keys=True),
                 json.dumps(baseline or {}), now, now, kind),
            )

    def set_status(self, run_id: str, status: str) -> None:
        if status not in RUN_STATUSES:  # one vocabulary for every kind, the dashboard and the CLI
            raise GeminiError(f"run status {status!r}: one of {', '.join(RUN_STATUSES)}")
        with self._connect(write=True) as db:
            db.execute("UPDATE runs SET status=?, updated_at=? WHERE run_id=?", (status, time.time(), run_id))

    def rename_run(self, run_id: str, name: str) -> None:
        name = name.strip()
        if not name:
            raise GeminiError("a run name cannot be empty")
        with self._connect(write=True) as db:
            if db.execute("UPDATE runs SET name=? WHERE run_id=?", (name, run_id)).rowcount == 0:
                raise GeminiError(f"no run {run_id!r}")

    def delete_run(self, run_id: str) -> None:
        with self._connect(write=True) as db:
            db.execute("DELETE FROM points WHERE run_id=?", (run_id,))
            if db.execute("DELETE FROM runs WHERE run_id=?", (run_id,)).rowcount == 0:
                raise GeminiError(f"no run {run_id!r}")

    def runs(self) -> list[dict]:
        """Every run, newest first; a run whose stored spec cannot be read is skipped (``damaged_rows_notice``)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT r.*, (SELECT COUNT(*) FROM points p WHERE p.run_id=r.run_id AND p.status='ok') AS points_ok,"
                " (SELECT COUNT(*) FROM points p WHERE p.run_id=r.run_id AND p.status='failed') AS points_failed"
                " FROM runs r ORDER BY created_at DESC"
            ).fetchall()
        out = []
        for row in rows:
            item = self._run(row)
            if item is not None:
                out.append(item)
        return out

    def _run(self, row) -> dict | None:
        item = dict(row)
        spec, baseline = _json_object(item.pop("spec_json")), _json_object(item.pop("baseline_json"))
        if spec is None or baseline is None:
            self.skipped["run"].add(item["run_id"])
            return None
        item["spec"], item["baseline"] = spec, baseline
        if "kind" not in item:  # an earlier version's runs table, read without upgrading it
            item["kind"] = run_kind(item["spec"], item["baseline"])
        return item

    def get_run(self, run_id: str) -> dict:
        for run in self.runs():
            if run["run_id"] == run_id:
                return run
        if run_id in self.skipped["run"]:
            raise GeminiError(f"run {run_id!r} is damaged in the run store {self.path}: its stored settings cannot "
                              "be read (not a JSON object); the other runs read as usual")
        raise GeminiError(f"no run {run_id!r}; `python -m gemini_core runs` lists them")

    # -- points -----------------------------------------------------------------------------
    def add_point(self, run_id: str, baseline_key: str, point_key: str, record: dict, status: str = "ok",
                  error: str | None = None) -> int:
        """Store one point (replacing the run's point of the same key). The record is checked against the
        point record's schema first: a record that does not fit is one GeminiError naming the field, and
        nothing is written. ``status`` and ``error`` are the row's (they win over the record's own)."""
        record = PointRecord.validate_dict({**record, "status": status, "error": error})
        with self._connect(write=True) as db:
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
        """A measured (ok) point for this baseline and point key, in any run (a damaged one is measured again)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM points WHERE baseline_key=? AND point_key=? AND status='ok'"
                " ORDER BY created_at DESC", (baseline_key, point_key)).fetchall()
        return next((p for p in map(self._point, rows) if p is not None), None)

    def points(self, run_id: str, include_failed: bool = True) -> list[dict]:
        """The run's points; one whose record cannot be read is skipped and named (``damaged_rows_notice``)."""
        query = "SELECT * FROM points WHERE run_id=?" + ("" if include_failed else " AND status='ok'")
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY point_id", (run_id,)).fetchall()
        return [p for p in map(self._point, rows) if p is not None]

    def get_point(self, point_id: int) -> dict:
        with self._connect() as db:
            row = db.execute("SELECT * FROM points WHERE point_id=?", (int(point_id),)).fetchone()
        if row is None:
            raise GeminiError(f"no point {point_id}")
        point = self._point(row)
        if point is None:
            raise GeminiError(f"point {point_id} is damaged in the run store {self.path}: its record cannot be read "
                              "(not a JSON object); the run's other points read as usual")
        return point

    def _point(self, row) -> dict | None:
        record = _json_object(row["record_json"])
        if record is None:
            self.skipped["point"].add(int(row["point_id"]))
            return None
        if self.upgrade_on_read:
            record = upgrade_record(record)
        record.update({"point_id": row["point_id"], "run_id": row["run_id"], "point_key": row["point_key"],
                       "status": row["status"], "error": row["error"], "baseline_key": row["baseline_key"]})
        return record

    # -- sensitivity analyses (sensitivity.py) ---------------------------------------------------
    def save_analysis(self, analysis_id: str, baseline_key: str, scenario: str, params: dict, result: dict,
                      status: str) -> None:
        now = time.time()
        with self._connect(write=True) as db:
            db.execute(
                "INSERT INTO analyses (analysis_id, baseline_key, scenario, params_json, result_json, status,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(analysis_id) DO UPDATE SET"
                " result_json=excluded.result_json, status=excluded.status, updated_at=excluded.updated_at",
                (analysis_id, baseline_key, scenario, json.dumps(params, sort_keys=True), json.dumps(result),
                 status, now, now))

    def get_analysis(self, analysis_id: str) -> dict | None:
        """The stored analysis (None when there is none, or when its JSON cannot be read: it is run again)."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM analyses WHERE analysis_id=?", (analysis_id,)).fetchone()
        return self._analysis(row) if row else None

    def analyses(self, baseline_key: str | None = None) -> list[dict]:
        """Stored analyses, newest first (all, or of one baseline)."""
        where = " WHERE baseline_key=?" if baseline_key else ""
        query = "SELECT * FROM analyses" + where + " ORDER BY updated_at DESC"
        with self._connect() as db:
            rows = db.execute(query, (baseline_key,) if baseline_key else ()).fetchall()
        return [a for a in map(self._analysis, rows) if a is not None]

    def _analysis(self, row) -> dict | None:
        params, result = _json_object(row["params_json"]), _json_object(row["result_json"])
        if params is None or result is None:
            self.skipped["analysis"].add(row["analysis_id"])
            return None
        return {"analysis_id": row["analysis_id"], "baseline_key": row["baseline_key"], "scenario": row["scenario"],
                "params": params, "result": result, "status": row["status"], "created_at": row["created_at"],
                "updated_at": row["updated_at"]}

    def integrity_ok(self) -> bool:
        with self._connect() as db:
            return db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def run_kind(spec: dict | None, baseline: dict | None = None) -> str:
    """The kind of a run from what it stored: its spec's (or baseline's) ``kind`` (LLM runs named it from
    the start), else the records' legacy rule (``legacy_kind``)."""
    spec, baseline = spec or {}, baseline or {}
    return legacy_kind(spec if spec.get("kind") else baseline)


def _upgrade_from_1(db) -> None:
    """Version 1 to 2, inside the caller's transaction: each point's record upgraded (``upgrade_record``:
    figures kept as they were, none refused), each run's kind from its spec."""
    for row in db.execute("SELECT point_id, record_json FROM points").fetchall():
        try:
            record = json.loads(row["record_json"])
        except ValueError:
            continue  # a row no version could read stays as it is; reading it reports it
        if isinstance(record, dict):
            db.execute("UPDATE points SET record_json=? WHERE point_id=?",
                       (json.dumps(upgrade_record(record)), row["point_id"]))
    if "kind" not in _columns(db, "runs"):
        db.execute("ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'classifier'")
    for row in db.execute("SELECT run_id, spec_json, baseline_json FROM runs").fetchall():
        try:
            spec, baseline = json.loads(row["spec_json"]), json.loads(row["baseline_json"])
        except ValueError:
            continue
        if isinstance(spec, dict) and isinstance(baseline, dict):
            db.execute("UPDATE runs SET kind=? WHERE run_id=?", (run_kind(spec, baseline), row["run_id"]))


def _columns(db, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code of an error (SQLITE_BUSY, SQLITE_FULL, ...), None when it has none."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _is_read_only(exc: sqlite3.Error) -> bool:
    """SQLite's 'attempt to write a readonly database' (a read-only file, folder or open mode)."""
    return _code(exc) == sqlite3.SQLITE_READONLY or "readonly" in str(exc)


def _unwritable(path: Path) -> str | None:
    """Why the store at ``path`` cannot be written here (its folder or the file is read-only), or None."""
    folder = path.parent
    if folder.is_dir() and not os.access(folder, os.W_OK):
        return f"its folder {folder} is read-only (SQLite writes its journal beside the file)"
    if path.is_file() and not os.access(path, os.W_OK):
        return "the file is read-only"
    return None


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return -1


def _json_object(text) -> dict | None:
    """A stored JSON object, or None when the text is not one (a damaged row)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
