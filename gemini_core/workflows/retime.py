"""One retime for every model kind: a stored run's points timed again, interleaved, in one pass, so a change
of load touches all points alike. This door checks the run; the run's kind rebuilds and times its points
(a classifier per batch, a causal LM's prefill and decode on the execution each point ran on)."""
from __future__ import annotations

from collections.abc import Callable

from gemini_core.errors import ConfigError
from gemini_core.kinds.registry import engine, kind_for_scenario
from gemini_core.results.store import Store


def retime_run(store: Store, run_id: str, rounds: int = 5, device=None, threads: int | None = None,
               latency_kwargs: dict | None = None, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Time every ok point of run ``run_id`` again and store the new latencies (earlier figures are kept under
    ``previous_latency``); returns the updated records."""
    if rounds < 1:
        raise ConfigError(f"rounds {rounds} must be at least 1")
    run = store.get_run(run_id)
    points = [p for p in store.points(run_id) if p.get("status") == "ok"]
    if not points:
        raise ConfigError(f"run {run_id} has no measured points to re-time")
    if not run.get("baseline"):
        raise ConfigError(f"run {run_id} has no stored baseline description; run the sweep again")
    return engine(kind_for_scenario(run["scenario"])).retime(
        store, run, points, rounds=rounds, device=device, threads=threads, latency_kwargs=latency_kwargs,
        progress=progress)
