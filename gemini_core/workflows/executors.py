"""Where sweep units run: this process ("local"), or a Ray cluster ("ray", see ray_executor.py)."""
from __future__ import annotations

from gemini_core.errors import ConfigError
from gemini_core.workflows.ray_executor import RayExecutor

# None: the local executor (run_sweep's own loop); otherwise a class taking the cluster address.
EXECUTORS = {"local": None, "ray": RayExecutor}


def make_executor(executor: str | None = "local", ray_address: str | None = None):
    """None for the local executor (this process), else an executor object; bad names raise ConfigError."""
    if executor is None or executor == "local":
        if ray_address:
            raise ConfigError("a Ray address was given but the executor is local; add --executor ray")
        return None
    if isinstance(executor, str) and executor in EXECUTORS:
        return EXECUTORS[executor](ray_address)
    if hasattr(executor, "run_units"):
        return executor
    raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
