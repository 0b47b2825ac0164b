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
"""
from __future__ import annotations

import dataclasses
import threading
import time
import traceback
import uuid
from typing import Any, Callable

from gemini_core.errors import Cancelled, GeminiError
from gemini_core.scenarios.registry import scenario_entry

DEMO_GRID = dict(prune_methods=("l1-structured",), prune_ratios=(0.0, 0.25, 0.5, 0.75), bits=(32, 8, 4, 2),
                 granularities=("per-channel",), executions=("dense", "sparse"), finetune_steps=(60,),
                 batch_size=32)

def demo_spec():
    from gemini_core.workflows.sweep import SweepSpec

    return SweepSpec(**DEMO_GRID)


def planning_costs(scenario_name: str) -> tuple[float, float]:
    """(seconds per point, seconds per pruning setting) the estimate uses for this scenario (its registry entry)."""
    entry = scenario_entry(scenario_name)
    return entry.seconds_per_point, entry.seconds_per_setting


def estimate_seconds(spec, scenario_name: str, baseline_cached: bool = True) -> float:
    """Rough wall time of a sweep: points x per-point cost + pruning settings x per-setting cost."""
    entry = scenario_entry(scenario_name)
    per_point, per_setting = entry.seconds_per_point, entry.seconds_per_setting
    finetune = max(spec.finetune_steps) if spec.finetune_steps else 0
    per_setting *= max(1.0, finetune / 60.0) if entry.recovery_scales_with_steps else 1.0
    # QAT recovers once per (pruning, bits, granularity): each is a pruning setting of its own.
    settings = len(spec.prune_settings()) + len(spec.qat_settings()) + len(spec.distill_settings())
    seconds = spec.n_points() * per_point + settings * per_setting
    if not baseline_cached:
        seconds += entry.seconds_to_train
    return seconds


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
        self.threads: int | None = None  # torch CPU threads the job ran with (compute lane)
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

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
            self.message = "cancelling after the current point..."

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
            if self.first_record_at is None:
                self.first_record_at = time.time()
            self.records.append(record)

    def snapshot(self) -> dict:
        with self._lock:
            return {"id": self.id, "kind": self.kind, "title": self.title, "state": self.state,
                    "message": self.message, "error": self.error, "error_detail": self.error_detail,
                    "records": list(self.records), "events": list(self.events), "total": self.total,
                    "elapsed": self.elapsed, "result": self.result,
                    "first_record_after": (self.first_record_at - self.started_at)
                    if self.first_record_at and self.started_at else None}


class _BaselineMixin:
    """Build the scenario and load or train its baseline, streaming training events.

    ``adaptive`` (the fields of ``gemini_core.adaptive.AdaptiveSettings``) makes the baseline an
    adaptively trained one: learning rate and structure adapt while training; it is cached like
    any other baseline, so a sweep on it finds it without training again.
    """

    scenario_name: str
    options: dict
    train: dict | None
    adaptive: dict | None = None

    def _model_from(self, scenario_name: str, options: dict | None, train: dict | None,
                    adaptive: dict | None) -> None:
        """The model a job works on (copies: the page's dicts may change while the job runs)."""
        self.scenario_name, self.options = scenario_name, dict(options or {})
        self.train = dict(train) if train else None
        self.adaptive = dict(adaptive) if adaptive else None
        self.baseline_info: dict | None = None
        self.baseline_history: list[dict] = []
        self.adaptive_summary: dict | None = None

    def _baseline(self):
        if self.adaptive:
            return self._adaptive_baseline()
        from gemini_core.scenarios import TrainSettings, get_scenario
        from gemini_core.training.baseline import get_baseline

        self.message = f"loading data for {self.scenario_name}"
        scenario = get_scenario(self.scenario_name, **self.options)
        scenario.splits  # load (and check) the data here, with this message showing
        settings = TrainSettings(**self.train) if self.train else scenario.default_train
        self.message = "loading or training the baseline"

        def progress(event: dict) -> None:
            self._add_event(event)
            if event.get("event") == "step":
                self.message = (f"training the baseline: epoch {event['epoch']}, step {event['step']}"
                                f"/{event['total_steps']}, loss {event['loss']:.3f}")
            elif event.get("event") == "cached":
                self.message = "baseline loaded from the cache"

        try:
            baseline = get_baseline(scenario, settings, progress=progress, retrain=getattr(self, "retrain", False),
                                    should_stop=self.should_stop)
        except Cancelled:  # the engine keeps nothing of a stopped training
            return scenario, None
        self.baseline_info = baseline.describe()
        self.baseline_history = list(baseline.history)
        return scenario, baseline

    def _adaptive_baseline(self):
        from gemini_core.adaptive import AdaptiveSettings, train_adaptive
        from gemini_core.scenarios import get_scenario

        self.message = f"loading data for {self.scenario_name}"
        scenario = get_scenario(self.scenario_name, **self.options)
        scenario.splits
        settings = AdaptiveSettings.from_dict(self.adaptive)  # checked again here: the job owns its input
        self.message = "adaptive training: starting"

        def progress(event: dict) -> None:
            self._add_event(event)
            kind = event.get("event")
            if kind == "step":
                self.message = (f"adaptive training: epoch {event['epoch']}, step {event['step']}"
                                f"/{event['total_steps']}, loss {event['loss']:.3f}")
            elif kind == "prune":
                self.message = f"adaptive training: pruned to {event['ratio']:.0%} in epoch {event['epoch']}"
            elif kind == "rollback":
                self.message = f"adaptive training: pruning step rolled back in epoch {event['epoch']}"
            elif kind == "cached":
                self.message = "adaptive baseline loaded from the cache"

        try:
            baseline = train_adaptive(scenario, settings, progress=progress, should_stop=self.should_stop,
                                      retrain=getattr(self, "retrain", False))
        except Cancelled:  # nothing of a stopped training is cached
            return scenario, None
        self.baseline_info = baseline.describe()
        self.baseline_history = list(baseline.history)
        self.adaptive_summary = dict(baseline.summary or {})
        return scenario, baseline


class SweepJob(_BaselineMixin, Job):
    """Train the baseline if needed, then stream ``run_sweep`` points into ``records``."""

    kind = "sweep"

    def __init__(self, scenario_name: str, spec, options: dict | None = None, train: dict | None = None,
                 run_name: str | None = None, title: str | None = None, adaptive: dict | None = None,
                 executor: str = "local", ray_address: str | None = None):
        super().__init__(title or f"sweep of {scenario_name} ({spec.n_points()} points)"
                         + (" on Ray" if executor == "ray" else ""))
        self._model_from(scenario_name, options, train, adaptive)
        self.spec = spec
        self.executor, self.ray_address = executor, ray_address or None
        self.run_name = run_name or None
        self.total = spec.n_points()
        self.run_id: str | None = None

    def work(self) -> None:
        from gemini_core.device import pick_device
        from gemini_core.results.store import Store
        from gemini_core.workflows.sweep import run_id_for, run_sweep

        store = Store().check()  # a damaged store is reported before the baseline trains
        scenario, baseline = self._baseline()
        if baseline is None or self.cancelled:
            return
        if self.executor == "ray":
            from gemini_core.workflows.ray_executor import connect

            self.message = f"connecting to Ray ({self.ray_address or 'a local instance'})"
            connect(self.ray_address)
        else:
            self.run_id = run_id_for(baseline.key, self.spec, pick_device())
        self.message = f"measuring {self.total} points" + (" on Ray" if self.executor == "ray" else "")
        for record in run_sweep(scenario, baseline, self.spec, store=store, name=self.run_name,
                                should_stop=self.should_stop, executor=self.executor,
                                ray_address=self.ray_address):
            self._add_record(record)
            self.run_id = record.get("run_id", self.run_id)
            if not self.cancelled:
                self.message = f"measured {len(self.records)} of {self.total} points"
        if not self.cancelled:
            self.message = f"finished: {len(self.records)} points"


class TrainJob(_BaselineMixin, Job):
    """Load or train a baseline, then measure its reference point (a 1-point sweep) for the card."""

    kind = "train"

    def __init__(self, scenario_name: str, options: dict | None = None, train: dict | None = None,
                 retrain: bool = False, adaptive: dict | None = None):
        super().__init__(f"{'adaptive ' if adaptive else ''}baseline for {scenario_name}")
        self._model_from(scenario_name, options, train, adaptive)
        self.retrain = retrain
        self.total = 1

    def work(self) -> None:
        from gemini_core.results.store import Store
        from gemini_core.workflows.sweep import SweepSpec, run_sweep

        store = Store().check()  # a damaged store is reported before the baseline trains
        scenario, baseline = self._baseline()
        if baseline is None or self.cancelled:
            return
        self.message = "measuring the baseline (accuracy, latency, size)"
        for record in run_sweep(scenario, baseline, SweepSpec(), store=store,
                                name=f"{scenario.name} baseline reference", should_stop=self.should_stop):
            self._add_record(record)
        self.result = {"baseline": self.baseline_info, "history": self.baseline_history,
                       "reference": self.records[-1] if self.records else None,
                       "adaptive_summary": self.adaptive_summary}
        self.message = "baseline ready"


class SensitivityJob(_BaselineMixin, Job):
    """Load or train the baseline, then run the sensitivity analysis; the growing profile is in ``profile``."""

    kind = "sensitivity"

    def __init__(self, scenario_name: str, params, options: dict | None = None, train: dict | None = None,
                 adaptive: dict | None = None):
        super().__init__(f"sensitivity of {scenario_name}")
        self._model_from(scenario_name, options, train, adaptive)
        self.params = params
        self.profile: dict | None = None

    def _keep(self, profile) -> None:
        data = profile.to_dict()
        with self._lock:
            self.profile = data
            self.total = data["total_steps"]

    def work(self) -> None:
        from gemini_core.results.store import Store
        from gemini_core.workflows.sensitivity import run_analysis

        Store().check()  # a damaged store is reported before the baseline trains
        scenario, baseline = self._baseline()
        if baseline is None or self.cancelled:
            return
        self.message = "analysing: baseline on the validation split"

        def progress(event: dict) -> None:
            self._add_event(event)
            self.message = f"{event['phase']}: {event['item']} ({event['done']} of {event['total']})"

        profile = run_analysis(scenario, baseline, self.params, progress=progress, should_stop=self.should_stop,
                               on_profile=self._keep)
        self._keep(profile)
        self.result = {"analysis_id": profile.analysis_id, "status": profile.status}
        if not self.cancelled:
            self.message = f"finished: {profile.done_steps} evaluations in {profile.seconds:.0f} s"

    def snapshot(self) -> dict:
        snap = super().snapshot()
        with self._lock:
            snap["profile"] = self.profile
        return snap


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


def train_settings_dict(settings) -> dict:
    return dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings)
