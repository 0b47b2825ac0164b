"""One sweep for every model kind: expand the kind's grid into units, skip points already stored, run
the rest here or on Ray, store each record the moment it exists, mark the run finished, cancelled (someone asked
it to stop) or interrupted (an error ended it).

What differs between kinds (how a unit is compressed and measured, what a point's key holds, how a
record is compared with the reference) is the kind's ``SweepSession`` (its engine's ``open_sweep``);
everything a sweep promises the user (re-use, resumption, cancellation, one failed point failing alone,
Ray streaming) is written once, here.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from gemini_core.errors import Cancelled, GeminiError
from gemini_core.kinds.registry import engine, kind_for_scenario
from gemini_core.results.record import PointRecord
from gemini_core.results.store import Store
from gemini_core.workflows.executors import make_executor

# Fields the store owns: dropped when a point measured in another run is copied into this one.
_STORE_FIELDS = ("point_id", "run_id", "point_key", "status", "error", "baseline_key")


class SweepUnit(Protocol):
    configs: tuple  # the point configs measured together (one pruning setting, or one LLM point)


class SweepSession(Protocol):
    """One kind's side of a sweep, opened by ``engine.open_sweep`` once the model is loaded."""

    run_id: str
    run_name: str
    scenario_name: str
    baseline_key: str
    spec_dict: dict  # stored with the run
    description: dict  # the baseline's description, stored with the run (retime and export rebuild from it)

    def units(self) -> Iterable[SweepUnit]: ...

    def point_key(self, config) -> str: ...

    def config_of(self, record: dict): ...  # the config a record was measured for

    def run_unit(self, unit, skip: set, should_stop: Callable[[], bool] | None) -> Iterator[dict]: ...

    def run_remote(self, plans: list, should_stop: Callable[[], bool] | None) -> Iterator[dict]: ...

    def compare(self, record: dict) -> dict: ...  # the record with its paired difference to the reference


def run_sweep(scenario, spec, store: Store | None = None, *, baseline=None, device=None, force: bool = False,
              name: str | None = None, should_stop: Callable[[], bool] | None = None,
              progress: Callable[[str], None] | None = None, latency_kwargs: dict | None = None,
              executor="local", ray_address: str | None = None) -> Iterator[dict]:
    """Run ``spec`` (the scenario's kind's grid) and yield the stored record of every point.

    Points already stored for the same model and measurement are copied, not measured again
    (``"reused": True``) unless ``force``. A failed point is stored with its reason and the sweep goes
    on; ``should_stop`` ends it between points (or inside a long step). ``executor``: "local", "ray"
    (with ``ray_address``; None starts a local Ray instance) or an executor object. ``baseline``: the
    trained model for kinds that train one (trained or loaded when None).
    """
    store = store or Store()
    remote = make_executor(executor, ray_address)
    kind = engine(kind_for_scenario(scenario.name))
    session = kind.open_sweep(scenario, spec, baseline=baseline, device=device, remote=remote,
                              latency_kwargs=latency_kwargs, progress=progress)
    return _drive(session, store, remote is not None, force, name, should_stop, progress)


def _drive(session: SweepSession, store: Store, on_remote: bool, force: bool, name: str | None,
           should_stop: Callable[[], bool] | None, progress: Callable[[str], None] | None) -> Iterator[dict]:
    run_id = session.run_id
    store.ensure_run(run_id, name or session.run_name, session.scenario_name, session.baseline_key,
                     session.spec_dict, session.description)
    finished = True

    def stopped() -> bool:
        return should_stop is not None and should_stop()

    def keep(record: dict) -> dict:
        key = session.point_key(session.config_of(record))
        record = session.compare(record)
        try:
            PointRecord.validate_dict(record)
        except GeminiError as exc:  # a measurement that does not fit the record's schema fails its point alone
            record = {k: record.get(k) for k in ("kind", "quality_metric", "config", "label") if k in record}
            record.update(status="failed", error=f"the measured record was refused: {exc}"[:2000])
        point_id = store.add_point(run_id, session.baseline_key, key, record, status=record.get("status", "ok"),
                                   error=record.get("error"))
        return {**record, "point_id": point_id, "run_id": run_id, "point_key": key,
                "baseline_key": session.baseline_key}

    def reuse(unit) -> Iterator[dict]:
        """Yield the unit's points already stored (copied into this run); returns their config keys."""
        skip = set()
        for config in unit.configs:
            if force:
                continue
            found = store.find_point(session.baseline_key, session.point_key(config))
            if found is None:
                continue
            skip.add(config.key())
            if found["run_id"] != run_id:  # measured in another run: copy it into this one
                record = {k: v for k, v in found.items() if k not in _STORE_FIELDS}
                found = keep({**record, "reused_from": found["run_id"]})
            yield {**found, "reused": True}
        return skip

    try:
        plans = []
        for unit in session.units():
            if stopped():
                finished = False
                break
            skip = yield from reuse(unit)
            if all(c.key() in skip for c in unit.configs):
                continue
            if on_remote:  # measured below, all at once on the cluster
                plans.append((unit, frozenset(skip)))
                continue
            for record in session.run_unit(unit, skip, should_stop):
                yield keep(record)
        if plans and finished and not stopped():
            if progress is not None:
                progress(f"measuring {sum(len(u.configs) - len(s) for u, s in plans)} points on Ray")
            for record in session.run_remote(plans, should_stop):
                yield keep(record)
        if stopped():
            finished = False
    except Cancelled:
        finished = False
    except BaseException:
        finished = False
        raise
    finally:
        # A stop asked for is "cancelled" whenever it came (even after the last point): the words a job shows.
        store.set_status(run_id, "cancelled" if stopped() else "finished" if finished else "interrupted")
