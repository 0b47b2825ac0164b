"""Run a sweep's units on a Ray cluster: one task per pruning setting, points streamed back as they finish.

``run_sweep(..., executor="ray")`` hands its units here. Each unit becomes one Ray generator task
(prune, recover, then every bit width and execution on that model) that yields one record per
point, so the driver stores and yields points while tasks still run. The baseline model goes to
the object store once; the scenario is rebuilt on the worker from its description (name and
data options) and checked against the driver's data fingerprint, so a node holding different
data fails its points with a reason instead of measuring something else.

Ray is imported lazily: the rest of the product works without it installed.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Callable, Iterator

from gemini_core.config import CompressionConfig
from gemini_core.errors import ConfigError, DataError
from gemini_core.kinds.classifier.units import failed_record, run_unit
from gemini_core.scenarios import get_scenario

RAY_MISSING = "Ray is not installed: pip install 'ray>=2.9'"
# A task on a node that dies is re-run elsewhere this many times before its points are marked failed.
MAX_RETRIES = 3


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def ray_module():
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def connect(address: str | None = None) -> float:
    """Join the cluster at ``address`` ("auto" or "HOST:PORT"), or start a local instance sized to this
    machine when None. Returns the seconds it took (0 when already connected)."""
    global _CONNECTED
    ray = ray_module()
    wanted = address or "local"
    if ray.is_initialized():
        if _CONNECTED in (None, wanted):  # None: initialised by the caller; use it as it is
            return 0.0
        ray.shutdown()  # another cluster was asked for
    started = time.perf_counter()
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address:
        _check_reachable(address)
        # Nodes other than this one may not have the engine on their path: ship it with the job.
        kwargs["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parents[1])]}  # gemini_core/
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot connect to the Ray cluster at {address!r}: {exc}".splitlines()[0]) from None
    else:
        # "local": a fresh instance, never silently one that `ray start` left running on this host.
        ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)
    _CONNECTED = wanted
    return time.perf_counter() - started


_CONNECTED: str | None = None  # the address this process joined ("local" for its own instance)


def _check_reachable(address: str) -> None:
    """HOST:PORT must answer: Ray itself retries an absent head for minutes before giving up."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not auto or HOST:PORT")
    import socket

    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(f"no Ray head answers at {address} ({exc.strerror or exc}); start one there with "
                          "`ray start --head` or check the address") from None


def cluster_summary(address: str | None = None) -> dict:
    """Nodes, CPUs and GPUs of the cluster at ``address`` (a local instance when None), connecting if needed."""
    ray = ray_module()
    connect(address)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {
        "address": address or "local",
        "ray_version": ray.__version__,
        "nodes": [{"host": n.get("NodeManagerHostname", "?"), "ip": n.get("NodeManagerAddress", "?"),
                   "cpus": float(n.get("Resources", {}).get("CPU", 0)),
                   "gpus": float(n.get("Resources", {}).get("GPU", 0))} for n in nodes],
        "n_nodes": len(nodes),
        "cpus": float(sum(n.get("Resources", {}).get("CPU", 0) for n in nodes)),
        "gpus": float(sum(n.get("Resources", {}).get("GPU", 0) for n in nodes)),
    }


def shutdown() -> None:
    if ray_available():
        import ray

        if ray.is_initialized():
            ray.shutdown()
    global _CONNECTED
    _CONNECTED = None


# -- the worker side ---------------------------------------------------------------------------
_SCENARIOS: dict[str, object] = {}  # a worker process is reused across tasks: load each scenario's data once


def _worker_scenario(description: dict):

    key = json.dumps({"scenario": description["scenario"], "options": description.get("scenario_options", {})},
                     sort_keys=True)
    if key not in _SCENARIOS:
        scenario = get_scenario(description["scenario"], **description.get("scenario_options", {}))
        expected = description.get("data_fingerprint")
        if expected and scenario.fingerprint() != expected:
            import socket

            raise DataError(f"the data of scenario {description['scenario']!r} on node {socket.gethostname()} "
                            "differs from the driver's; give every node the same files at the same path")
        _SCENARIOS[key] = scenario
    return _SCENARIOS[key]


def unit_task(model, description: dict, unit, batch_size: int, device_type: str, skip: frozenset,
              latency_kwargs: dict | None) -> Iterator[dict]:
    """The body of one Ray task: run_unit on this worker, on its share of the node."""
    import ray
    import torch


    if device_type == "cpu":
        # Ray reserved this many CPUs for the task: use exactly them, so concurrent tasks don't oversubscribe.
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(cpus)))
    device = torch.device("cuda" if device_type == "cuda" else "cpu")  # Ray sets CUDA_VISIBLE_DEVICES
    try:
        scenario = _worker_scenario(description)
    except Exception as exc:  # the unit's points fail with the reason; the sweep goes on
        for config in unit.configs:
            if config.key() not in skip:
                yield failed_record(config, batch_size, device, exc)
        return
    node = ray.get_runtime_context().get_node_id()[:12]
    for record in run_unit(model, scenario, unit, batch_size, device, None, skip, latency_kwargs):
        yield {**record, "executor": "ray", "ray_node": node}


# -- the driver side ---------------------------------------------------------------------------
class RayExecutor:
    """Runs units as Ray generator tasks. ``address``: None (local instance), "auto" or "HOST:PORT"."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_task: int | None = None,
                 max_retries: int = MAX_RETRIES):
        ray_module()  # fail now, with the install hint, not halfway through a sweep
        self.address = address or None
        self.cpus_per_task = cpus_per_task
        self.max_retries = max_retries
        self.init_seconds: float | None = None

    def device_type(self, device) -> str:
        """cuda when the cluster has GPUs (unless ``device`` says cpu), else cpu."""
        ray = ray_module()
        self.init_seconds = connect(self.address)
        gpus = ray.cluster_resources().get("GPU", 0)
        wanted = str(device).split(":")[0] if device else None
        if wanted == "cuda" and gpus < 1:
            raise ConfigError("--device cuda was asked for but the Ray cluster has no GPU")
        if wanted and wanted not in ("cpu", "cuda"):
            raise ConfigError(f"device {device!r} cannot be used with the Ray executor; use cpu or cuda")
        return "cuda" if (wanted or "cuda") == "cuda" and gpus >= 1 else "cpu"

    def device_key(self, device_type: str) -> str:
        # Points measured by Ray workers (their own CPU share, other hosts) are keyed apart from local
        # ones, so a local sweep never reuses them as its own; each record still names its host and device.
        return f"ray:{device_type}"

    def resources(self, device_type: str, n_tasks: int) -> dict:
        ray = ray_module()
        if device_type == "cuda":
            return {"num_gpus": 1, "num_cpus": 1}
        if self.cpus_per_task:
            return {"num_cpus": self.cpus_per_task}
        # Spread the cluster's CPUs over the tasks, never asking more than the smallest node has
        # (a bigger request could never be scheduled there) and at least one each.
        node_cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
        node_cpus = [c for c in node_cpus if c >= 1] or [1]
        total = sum(node_cpus)
        return {"num_cpus": int(max(1, min(min(node_cpus), total // max(1, n_tasks))))}

    def run_units(self, model, description: dict, plans: list, batch_size: int, device_type: str,
                  should_stop: Callable[[], bool] | None = None,
                  latency_kwargs: dict | None = None) -> Iterator[dict]:
        """Yield each point's record as any task produces it; ``plans``: (unit, skip) pairs.

        A point comes back once even when Ray re-runs a task whose node died after it had streamed
        some points; a task that fails for good yields a failed record for each point it did not
        return, so the sweep goes on.
        """
        ray = ray_module()

        if not plans:
            return
        remote = ray.remote(unit_task).options(
            num_returns="streaming", max_retries=self.max_retries, retry_exceptions=False,
            **self.resources(device_type, len(plans)))
        model_ref = ray.put(model)  # once, shared by every task
        pending = {}  # generator -> (unit, config keys skipped or returned so far)
        for unit, skip in plans:
            gen = remote.remote(model_ref, description, unit, batch_size, device_type, frozenset(skip),
                                latency_kwargs)
            pending[gen] = (unit, set(skip))

        def failed(unit, done: set, exc: Exception) -> Iterator[dict]:
            reason = _TaskFailed(first_line(exc))
            for config in unit.configs:
                if config.key() not in done:
                    done.add(config.key())
                    yield {**failed_record(config, batch_size, device_type, reason),
                           "device": self.device_key(device_type)}

        yield from each_streamed_record(pending, lambda r: CompressionConfig.from_dict(r["config"]).key(), failed,
                                        should_stop)


def each_streamed_record(pending: dict, key_of: Callable[[dict], str],
                         failed: Callable[[object, set, Exception], Iterator[dict]],
                         should_stop: Callable[[], bool] | None = None) -> Iterator[dict]:
    """The records of streaming tasks as any task yields one, each point once. ``pending``: task -> (unit, the
    keys of its points skipped or returned so far); a task Ray re-ran after its node died repeats points already
    returned, which are dropped; a task that fails for good gives ``failed(unit, done, exc)``: the records of the
    points it did not return, so the sweep goes on."""
    ray = ray_module()
    for task in each_ready(pending, should_stop):
        unit, done = pending[task]
        try:
            record = ray.get(next(task))
        except StopIteration:
            del pending[task]
            continue
        except Exception as exc:  # the task failed for good (retries spent, or a bug)
            del pending[task]
            yield from failed(unit, done, exc)
            continue
        key = key_of(record)
        if key in done:
            continue
        done.add(key)
        yield record


def each_ready(pending: dict, should_stop: Callable[[], bool] | None = None) -> Iterator:
    """Each task of ``pending`` as it has a result (the caller removes the tasks that are done), until none
    is left or ``should_stop()``; whatever is left then is cancelled, so no task runs on for nothing."""
    ray = ray_module()
    try:
        while pending:
            if should_stop is not None and should_stop():
                return
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            yield from ready
    finally:
        for task in pending:
            try:
                ray.cancel(task, force=False)
            except Exception:
                pass


class _TaskFailed(RuntimeError):
    """A Ray task that failed for good; the message is Ray's first line."""


def first_line(exc: Exception) -> str:
    """``Type: first line`` of the error a task raised (a RayTaskError's own first line only names the task:
    its ``cause`` is what went wrong on the worker)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # Ray colours its task names
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:500]
