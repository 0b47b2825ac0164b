"""The compute-lane jobs: train or load a baseline, then sweep it, measure its reference point or
analyse its sensitivity (``jobs.py`` holds the job machinery: lanes, threads, the registry).

Engine imports sit inside the job methods on purpose: they pull in torch (seconds on 2 cores),
which the first page render must not wait for. The job thread pays it once.
"""
from __future__ import annotations

from gemini_core.errors import Cancelled

from .jobs import Job


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

    def _model(self):
        """(scenario, baseline) for kinds that train a baseline, (scenario, None) for kinds that load their
        model when the work starts; (None, None) when a training was stopped."""
        from gemini_core.kinds.registry import kind_for_scenario

        if kind_for_scenario(self.scenario_name).trains_baseline:
            scenario, baseline = self._baseline()
            return (scenario, baseline) if baseline is not None else (None, None)
        from gemini_core.scenarios import get_scenario

        self.message = "loading the model"
        return get_scenario(self.scenario_name, **self.options), None

    def _baseline(self):
        if self.adaptive:
            return self._adaptive_baseline()
        from gemini_core.scenarios import TrainSettings, get_scenario
        from gemini_core.workflows.baselines import load_or_train

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
            elif event.get("event") in ("shipped", "message") and event.get("message"):
                self.message = event["message"]

        try:
            baseline = load_or_train(scenario, settings, progress=progress, retrain=getattr(self, "retrain", False),
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
    """Train the baseline if the model's kind trains one (else load the model), then stream ``run_sweep``
    points into ``records``."""

    kind = "sweep"

    def __init__(self, scenario_name: str, spec, options: dict | None = None, train: dict | None = None,
                 run_name: str | None = None, title: str | None = None, adaptive: dict | None = None,
                 executor: str = "local", ray_address: str | None = None, force: bool = False):
        super().__init__(title or f"sweep of {scenario_name} ({spec.n_points()} points)"
                         + (" on Ray" if executor == "ray" else ""))
        self._model_from(scenario_name, options, train, adaptive)
        self.spec = spec
        self.executor, self.ray_address = executor, ray_address or None
        self.run_name = run_name or None
        self.force = force  # measure again points already stored (else they are reused)
        self.total = spec.n_points()
        self.run_id: str | None = None

    def work(self) -> None:
        from gemini_core.results.store import Store
        from gemini_core.workflows.sweep import run_sweep

        store = Store().check()  # a damaged store is reported before the baseline trains
        scenario, baseline = self._model()
        if scenario is None or self.cancelled:
            return
        if self.executor == "ray":
            from gemini_core.workflows.ray_executor import connect

            self.message = f"connecting to Ray ({self.ray_address or 'a local instance'})"
            connect(self.ray_address)
        self.message = f"measuring {self.total} points" + (" on Ray" if self.executor == "ray" else "")
        self._collect_points(run_sweep(scenario, self.spec, store=store, name=self.run_name,
                                       should_stop=self.should_stop, executor=self.executor, force=self.force,
                                       ray_address=self.ray_address, baseline=baseline, progress=self._say))

    def _say(self, text: str) -> None:
        self.message = text


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
        from gemini_core.kinds.classifier.spec import SweepSpec
        from gemini_core.results.store import Store
        from gemini_core.workflows.sweep import run_sweep

        store = Store().check()  # a damaged store is reported before the baseline trains
        scenario, baseline = self._baseline()
        if baseline is None or self.cancelled:
            return
        self.message = "measuring the baseline (accuracy, latency, size)"
        for record in run_sweep(scenario, SweepSpec(), store=store, name=f"{scenario.name} baseline reference",
                                should_stop=self.should_stop, baseline=baseline):
            self._add_record(record)
        self.result = {"baseline": self.baseline_info, "history": self.baseline_history,
                       "reference": self.records[-1] if self.records else None,
                       "adaptive_summary": self.adaptive_summary}
        self.message = "baseline ready"


class SensitivityJob(_BaselineMixin, Job):
    """Load or train the model, then run its kind's sensitivity analysis; the growing profile is in
    ``profile``."""

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
        self.message = f"{data['done_steps']} of {data['total_steps']} evaluations"

    def work(self) -> None:
        from gemini_core.results.store import Store
        from gemini_core.workflows.sensitivity import run_analysis

        store = Store().check()  # a damaged store is reported before the baseline trains
        scenario, baseline = self._model()
        if scenario is None or self.cancelled:
            return
        self.message = "analysing"

        def progress(event) -> None:
            self._add_event(event)
            if event.get("event") == "step":
                self.message = f"{event['phase']}: {event['item']} ({event['done']} of {event['total']})"
            elif event.get("message"):
                self.message = event["message"]

        profile = run_analysis(scenario, self.params, store, baseline=baseline, progress=progress,
                               should_stop=self.should_stop, on_profile=self._keep)
        self._keep(profile)
        self.result = {"analysis_id": profile.analysis_id, "status": profile.status}
        if not self.cancelled:
            self.message = f"finished: {profile.done_steps} evaluations in {profile.seconds:.0f} s"

    def snapshot(self) -> dict:
        snap = super().snapshot()
        with self._lock:
            snap["profile"] = self.profile
        return snap
