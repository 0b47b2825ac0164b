"""Run a recommender sweep's units on a Ray cluster: one streaming task per unit (a structure and its quantized
variants), records sent back as each point is measured.

The trained baseline is put in Ray's object store once and shared by every task; a worker rebuilds the
scenario (the log and its split) from the options it was made with, once per worker process, and checks the
data's fingerprint against the driver's before measuring anything: a node holding other files fails its points
with that reason instead of measuring something else. The unit runs through the same ``sweep.unit_records``
a local sweep uses (a library peer's unit too: the worker needs the peer's library installed, else its point
fails with the install line). Connection and resources are the classifier executor's (``workflows/ray_executor.py``).

Ray is imported lazily: the rest of the product works without it installed.
"""
from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import torch

from gemini_core.errors import DataError
from gemini_core.kinds.recommend.points import RecommendSweepSpec, config_from_dict, failed_record, unit_records
from gemini_core.scenarios import get_scenario
from gemini_core.workflows.ray_executor import RayExecutor, each_streamed_record, first_line, ray_module

_SCENARIOS: dict[str, object] = {}  # a worker process is reused across tasks: read each log once


def _worker_scenario(options: dict, fingerprint: str):
    key = json.dumps(options, sort_keys=True)
    if key not in _SCENARIOS:
        _SCENARIOS[key] = get_scenario("recommend", **options)
    scenario = _SCENARIOS[key]
    if scenario.fingerprint() != fingerprint:
        raise DataError(f"the interaction data on node {socket.gethostname()} differs from the driver's; give "
                        "every node the same files at the same path")
    return scenario


def recommend_unit_task(model, options: dict, fingerprint: str, spec: dict, unit, skip: frozenset) -> Iterator[dict]:
    """The body of one Ray task: ``unit`` measured on this worker's CPU share, each record yielded."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))  # exactly the CPUs Ray reserved: tasks do not oversubscribe
    node = ray.get_runtime_context().get_node_id()[:12]
    try:
        scenario = _worker_scenario(options, fingerprint)
    except Exception as exc:  # the unit's points fail with the reason; the sweep goes on
        for config in unit.configs:
            if config.key() not in skip:
                yield {**failed_record(config, exc), "executor": "ray", "ray_node": node}
        return
    for record in unit_records(model, scenario.split, RecommendSweepSpec.from_dict(spec), unit, skip,
                               scenario_name=scenario.name):
        yield {**record, "executor": "ray", "ray_node": node, "host": socket.gethostname()}


def run_recommend_units(executor: RayExecutor, model, scenario, spec, plans: list,
                        should_stop: Callable[[], bool] | None = None,
                        fingerprint: str | None = None) -> Iterator[dict]:
    """Yield each point's record as any task produces it (``plans``: (unit, skip) pairs). A task that fails for
    good yields a failed record with Ray's first line for each point it did not return."""
    ray = ray_module()
    if not plans:
        return
    executor.device_type("cpu")  # connects (the recommender trains and measures on CPUs)
    remote = ray.remote(recommend_unit_task).options(num_returns="streaming", max_retries=executor.max_retries,
                                                     retry_exceptions=False, **executor.resources("cpu", len(plans)))
    options = {k: v for k, v in scenario.options.items() if v is not None}
    model_ref = ray.put(model)  # once, shared by every task
    pending = {}
    for unit, skip in plans:
        task = remote.remote(model_ref, options, fingerprint or scenario.fingerprint(), spec.to_dict(), unit,
                             frozenset(skip))
        pending[task] = (unit, set(skip))

    def failed(unit, done: set, exc: Exception) -> Iterator[dict]:
        for config in unit.configs:
            if config.key() not in done:
                done.add(config.key())
                yield {**failed_record(config, RuntimeError(first_line(exc))), "executor": "ray"}

    yield from each_streamed_record(pending, lambda r: config_from_dict(r["config"]).key(), failed, should_stop)
