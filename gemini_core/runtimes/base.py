"""Runtimes as an execution choice: the same trained model built on torch, ONNX Runtime or OpenVINO.

A ``Runtime`` turns a float ``nn.Module`` into a ``RuntimeModel`` at one precision. A
``RuntimeModel`` is called with the scenario's input dict (``model(inputs)`` or ``model(**inputs)``)
and returns fp32 logits as a torch tensor, so ``measure.measure_latency`` and
``measure.classification_metrics`` time and score it exactly as they do a torch model. It also says
how it was calibrated and how many bytes its serialized form takes.

Runtimes register themselves with ``@register_runtime("name")``; ``available()`` returns None
when the runtime can run here, else the reason (e.g. the package is not installed), so callers can
skip it with that reason instead of failing.
"""
from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn

from gemini_core.errors import ConfigError

Inputs = dict[str, torch.Tensor]


@dataclass(frozen=True)
class CalibrationInfo:
    """How a precision was calibrated: shown next to the point (a calibration that hurts must be visible)."""

    method: str  # e.g. "none", "minmax, QDQ static (onnxruntime quantize_static)"
    examples: int = 0  # examples seen during calibration
    batches: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


NO_CALIBRATION = CalibrationInfo("none")


@dataclass
class RuntimeModel:
    """A model built on one runtime at one precision; call it with the input dict, get fp32 logits."""

    runtime: str
    precision: str
    run: Callable[[Inputs], torch.Tensor]
    size_bytes: int  # bytes of the serialized form this runtime loads (ONNX file, IR xml+bin, safetensors)
    calibration: CalibrationInfo = NO_CALIBRATION
    threads: int | None = None
    build_seconds: float = 0.0
    details: dict = field(default_factory=dict)  # runtime-specific facts (version, options, quantized ops)

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.precision}"

    def __call__(self, inputs: Inputs | None = None, /, **named: torch.Tensor) -> torch.Tensor:
        # Both call styles: ``model(inputs)`` (runtimes API) and ``model(**inputs)`` (measure.py, train.predict).
        feed = {**(inputs or {}), **named}
        if not feed:
            raise ConfigError(f"{self.label}: called without inputs")
        return self.run(feed)

    def eval(self) -> "RuntimeModel":
        return self  # measure.py calls model.eval(); a built runtime model is always in inference mode

    def to(self, *_args, **_kwargs) -> "RuntimeModel":
        return self  # CPU runtimes: device moves are no-ops (inputs are converted in ``run``)

    def record(self) -> dict:
        """What a point stores about how it ran."""
        return {"runtime": self.runtime, "precision": self.precision, "size_bytes": self.size_bytes,
                "threads": self.threads, "build_seconds": round(self.build_seconds, 3),
                "calibration": self.calibration.to_dict(), **self.details}


class Runtime(Protocol):
    name: str
    precisions: tuple[str, ...]

    def available(self) -> str | None:
        """None when this runtime can run here; otherwise the reason it cannot (one line)."""

    def build(self, model: nn.Module, example_inputs: Inputs, calibration: list[Inputs] | None,
              precision: str, threads: int | None = None) -> RuntimeModel:
        """``model`` on this runtime at ``precision``; ``calibration`` batches feed static quantization."""


_REGISTRY: dict[str, Runtime] = {}


def register_runtime(name: str):
    """Class decorator: instantiate the runtime class and register it under ``name``."""

    def decorate(cls):
        instance = cls()
        instance.name = name
        _REGISTRY[name] = instance
        return cls

    return decorate


def get_runtime(name: str) -> Runtime:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown runtime {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def runtime_names() -> list[str]:
    return list(_REGISTRY)


def available_runtimes() -> dict[str, str | None]:
    """name -> None (usable here) or the reason it is not."""
    return {name: runtime.available() for name, runtime in _REGISTRY.items()}


def build(runtime: str, model: nn.Module, example_inputs: Inputs, calibration: list[Inputs] | None = None,
          precision: str = "fp32", threads: int | None = None) -> RuntimeModel:
    """Build ``model`` on ``runtime``: ConfigError when the runtime is missing or the precision unknown."""
    chosen = get_runtime(runtime)
    reason = chosen.available()
    if reason:
        raise ConfigError(f"runtime {runtime!r} cannot run here: {reason}")
    check_precision(chosen, precision)
    started = time.perf_counter()
    built = chosen.build(model, example_inputs, calibration, precision, threads=threads)
    built.build_seconds = time.perf_counter() - started
    return built


# -- helpers the runtimes share -----------------------------------------------------------------------
def check_precision(runtime: Runtime, precision: str) -> None:
    if precision not in runtime.precisions:
        raise ConfigError(f"runtime {runtime.name!r} has no precision {precision!r}; "
                          f"choose one of {', '.join(runtime.precisions)}")


def require_calibration(runtime: str, calibration: list[Inputs] | None) -> list[Inputs]:
    """Static int8 needs activation ranges: refuse to guess them without data."""
    if not calibration:
        raise ConfigError(f"{runtime} int8 is static quantization: pass calibration batches "
                          "(training examples) to measure activation ranges")
    return calibration


def calibration_counts(calibration: list[Inputs]) -> tuple[int, int]:
    """(examples, batches) of a calibration set."""
    examples = sum(int(next(iter(batch.values())).shape[0]) for batch in calibration)
    return examples, len(calibration)


def thread_count(threads: int | None) -> int:
    """The product's thread count: torch's (``device.set_compute_threads`` sets it) unless given."""
    if threads is not None and threads < 1:
        raise ConfigError(f"threads {threads} must be at least 1")
    return int(threads or torch.get_num_threads())


def to_numpy(inputs: Inputs) -> dict[str, np.ndarray]:
    return {name: tensor.detach().cpu().contiguous().numpy() for name, tensor in inputs.items()}


def is_transformer(model: nn.Module) -> bool:
    """Attention inside: NNCF's TRANSFORMER preset keeps softmax/layer-norm paths in float."""
    return any("attention" in type(module).__name__.lower() for module in model.modules())


@contextlib.contextmanager
def quiet():
    """Silence exporter and quantizer chatter (warnings, log lines, NNCF's progress bars on stdout)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
