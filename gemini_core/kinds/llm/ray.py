"""Run an LLM sweep's points on a Ray cluster: one task per point, records streamed back as they finish.

LLM points are the slowest of the product (GPTQ, SparseGPT and recovery take minutes each on a few
cores), and they are independent, so each becomes one Ray task. A worker rebuilds the scenario from the
run's description (model spec and text options), loads the model once per worker process, and checks
the run's baseline key (weights' and text's hashes) before measuring anything: a node holding another
model or text fails its points with that reason instead of measuring something else. The driver stores
each record as it arrives. Connection and resources are the classifier executor's (``ray_executor``).

Ray is imported lazily: the rest of the product works without it installed.
"""
from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import torch

from gemini_core.errors import DataError
from gemini_core.kinds.llm.point import LLMPointConfig, LLMSettings
from gemini_core.scenarios import get_scenario
from gemini_core.workflows.ray_executor import RayExecutor, each_ready, first_line, ray_module

_LOADED: dict[str, object] = {}  # a worker process is reused across tasks: load each model and text once


def _worker_scenario(options: dict, baseline_key: str):
    key = json.dumps(options, sort_keys=True)
    if key not in _LOADED:
        _LOADED[key] = get_scenario("llm", **options)
        _LOADED[key].load()
    scenario = _LOADED[key]
    if scenario.baseline_key() != baseline_key:
        raise DataError(f"the model or text on node {socket.gethostname()} differs from the driver's "
                        f"({scenario.baseline_key()} != {baseline_key}); give every node the same files")
    return scenario


def llm_point_task(measure: Callable, options: dict, baseline_key: str, config: dict, settings: dict) -> dict:
    """The body of one Ray task: one LLM point compressed and measured (``measure``: the sweep's
    ``llm_point_record``, passed in because the sweep imports this module) on this worker's CPU share."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))  # exactly the CPUs Ray reserved: tasks do not oversubscribe
    scenario = _worker_scenario(options, baseline_key)
    lm = scenario.load()
    record = measure(lm.model, lm.tokenizer, scenario, LLMPointConfig.from_dict(config),
                              LLMSettings.from_dict(settings))
    return {**record, "executor": "ray", "ray_node": ray.get_runtime_context().get_node_id()[:12],
            "host": socket.gethostname()}


def run_llm_points(executor: RayExecutor, measure: Callable, options: dict, baseline_key: str,
                   configs: list[LLMPointConfig], settings: LLMSettings,
                   should_stop: Callable[[], bool] | None = None) -> Iterator[tuple[LLMPointConfig, dict]]:
    """Yield (config, record) for each point as any task finishes; a task that fails for good yields a
    failed record with Ray's first line, so the sweep goes on. Stopping cancels the tasks still running."""
    ray = ray_module()
    if not configs:
        return
    executor.device_type("cpu")  # connects (the LLM points run on CPUs)
    remote = ray.remote(llm_point_task).options(max_retries=executor.max_retries, retry_exceptions=False,
                                                **executor.resources("cpu", len(configs)))
    pending = {remote.remote(measure, options, baseline_key, c.to_dict(), settings.to_dict()): c for c in configs}
    for ref in each_ready(pending, should_stop):
        config = pending.pop(ref)
        try:
            record = ray.get(ref)
        except Exception as exc:  # the point fails alone, with the task's reason
            record = {"kind": "llm", "config": config.to_dict(), "label": config.label(), "status": "failed",
                      "executor": "ray", "error": first_line(exc)}
        yield config, record
