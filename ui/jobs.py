"""Background jobs for the dashboard: plain threads around engine calls.

A job never calls ``st.*`` (it has no script context). It appends what the engine reports to
lists under a lock; the pages read ``snapshot()``s from a ``@st.fragment(run_every=...)``.
Jobs live in a ``JobRegistry`` that the app keeps in ``st.cache_resource`` (one per server
process), so a widget rerun, a page switch or a browser reload finds the running job again.

Lanes: training, sweeping and exporting share the "compute" lane, one job at a time: on 2 CPU
cores two would slow each other down and skew each other's latency measurements (and the
engine's memory measurement uses the process-wide torch profiler). A second job is refused
with a message, never queued silently.

Engine imports sit inside the job methods on purpose: they pull in torch (seconds on 2 cores),
which the first page render must not wait for. The job thread pays it once.

The jobs themselves: ``compute_jobs.py`` (baseline, sweep, sensitivity) and ``llm.py``; the demo
grid and the time estimate: ``sweep_plan.py``.
"""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from typing import Any, Callable

from gemini_core.errors import GeminiError


class JobBusy(GeminiError):
    """Another job holds the lane."""


class Job:
    """A unit of background work. Subclasses implement ``work()``."""

    kind = "job"
    lane = "compute"

    def __init__(self, title: str):
        self.id = uuid.uuid4().hex[:12]
        self.title = title
        self.state = "pending"  # pending -> running -> done | failed | cancelled
        self.error: str | None = None
        self.error_detail: str | None = None
        self.message = "waiting to start"
        self.events: list[dict] = []  # training progress events (step, epoch, cached)
        self.records: list[dict] = []  # measured points, in order
        self.result: Any = None
        self.total: int | None = None
        self.created_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.first_record_at: float | None = None
        self.record_times: list[float] = []  # when each record arrived: the job's own pace (estimates.time_left)
        self.threads: int | None = None  # torch CPU threads the job ran with (compute lane)
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, text: str) -> None:
        # a new line starts a new stage: the page shows how long the stage has run (converting a model's
        # tokenizer took 100 s at load 9 under one unchanging line)
        if text != getattr(self, "_message", None):
            self._message, self.message_at = text, time.time()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Job":
        self._thread = threading.Thread(target=self._run, name=f"gemini-{self.kind}-{self.id}", daemon=True)
        self.state = "running"
        self.started_at = time.time()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            if self.lane == "compute":
                from gemini_core.device import compute_threads_for_app, set_compute_threads

                # One core stays with the page and the browser (see compute_threads_for_app).
                self.threads = set_compute_threads(compute_threads_for_app())
            self.work()
            self.state = "cancelled" if self._cancel.is_set() else "done"
            if self.state == "cancelled":
                self.message = "cancelled; finished points are saved"
        except GeminiError as exc:  # the user's input: a message they can act on
            self.error, self.state = str(exc), "failed"
        except Exception as exc:  # a bug: keep the traceback for the details expander
            self.error = f"{type(exc).__name__}: {exc}"
            self.error_detail = traceback.format_exc()[-6000:]
            self.state = "failed"
        finally:
            self.finished_at = time.time()

    def work(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def cancel(self) -> None:
        self._cancel.set()
        if self.running:
            self.message = "cancelling at the next measured step..."

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def should_stop(self) -> bool:
        return self._cancel.is_set()

    @property
    def running(self) -> bool:
        return self.state in ("pending", "running")

    @property
    def done(self) -> bool:
        return not self.running

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at

    # -- reporting ---------------------------------------------------------------------------
    def _add_event(self, event: dict) -> None:
        with self._lock:
            self.events.append(dict(event))

    def _add_record(self, record: dict) -> None:
        record = {k: v for k, v in record.items() if k != "traceback"}
        with self._lock:
            now = time.time()
            if self.first_record_at is None:
                self.first_record_at = now
            self.records.append(record)
            self.record_times.append(now)

    def _collect_points(self, records) -> None:
        """Keep each point a sweep yields as it comes, with the "measured k of n" line; ``self.total`` is n."""
        for record in records:
            self._add_record(record)
            self.run_id = record.get("run_id", self.run_id)
            if not self.cancelled:
                self.message = f"measured {len(self.records)} of {self.total} points"
        if not self.cancelled:
            self.message = f"finished: {len(self.records)} points"

    def snapshot(self) -> dict:
        with self._lock:
            return {"id": self.id, "kind": self.kind, "title": self.title, "state": self.state,
                    "message": self.message, "error": self.error, "error_detail": self.error_detail,
                    "records": list(self.records), "events": list(self.events), "total": self.total,
                    "record_times": list(self.record_times), "now": time.time(),
                    "stage_seconds": time.time() - self.message_at,
                    "elapsed": self.elapsed, "result": self.result,
                    "first_record_after": (self.first_record_at - self.started_at)
                    if self.first_record_at and self.started_at else None}


class FunctionJob(Job):
    """Any engine call in the background: ``fn(job)`` returns the result (exports, checks)."""

    kind = "task"

    def __init__(self, title: str, fn: Callable[["FunctionJob"], Any], kind: str = "task", lane: str = "io"):
        super().__init__(title)
        self.fn, self.kind, self.lane = fn, kind, lane

    def work(self) -> None:
        self.message = self.title
        self.result = self.fn(self)
        self.message = "done"


class JobRegistry:
    """Every job of this server process, newest last. Thread-safe."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    KEEP_FINISHED = 20  # finished jobs kept for re-attaching (their points are in the store anyway)

    def submit(self, job: Job) -> Job:
        with self._lock:
            busy = [j for j in self._jobs.values() if j.lane == job.lane and j.running]
            if busy:
                raise JobBusy(f"{busy[-1].title} is still running; wait for it to finish or cancel it first")
            finished = [j for j in self._jobs.values() if j.done]
            for old in finished[: max(0, len(finished) - self.KEEP_FINISHED)]:
                del self._jobs[old.id]
            self._jobs[job.id] = job
            job.start()
        return job

    def get(self, job_id: str | None) -> Job | None:
        return self._jobs.get(job_id) if job_id else None

    def latest(self, kind: str | None = None) -> Job | None:
        jobs = [j for j in self._jobs.values() if kind is None or j.kind == kind]
        return jobs[-1] if jobs else None

    def running(self, lane: str | None = None) -> list[Job]:
        return [j for j in self._jobs.values() if j.running and (lane is None or j.lane == lane)]

    def all(self) -> list[Job]:
        return list(self._jobs.values())

