"""Executions on converted runtimes, and ``auto``: the stored weights run on ONNX Runtime or OpenVINO.

A point's storage (bits, granularity, pruning) is decided by the config as for torch; its execution
says where it computes: ``onnxruntime`` (fp32), ``onnxruntime-int8`` (static QDQ calibrated on
training examples), ``onnxruntime-int8-dynamic`` (int8 weights, activations quantized per batch),
``openvino`` (fp32), ``openvino-bf16``, ``openvino-int8`` (NNCF with
calibration), ``openvino-int4`` (NNCF 4-bit group-32 weights, data-free, so the runtime file stays
4-bit). The stored model is dequantized to float and converted, so 4-bit storage computed in bf16
or int8 is one point. ``auto`` builds torch dense and every runtime available here, times them
interleaved on this machine and keeps a runtime only where it is within ``AUTO_TOLERANCE_POINTS`` of torch's
validation accuracy and its paired timings put it ahead of torch at the same storage beyond their interval,
twice (``auto.choose_fastest``); otherwise torch is kept. Every timing is recorded.
"""
from __future__ import annotations

import copy
import json
import os
import threading
import time

import torch
from torch import nn

from gemini_core.config import CompressionConfig
from gemini_core.errors import ConfigError

# The runtimes it converts to come from their own modules: going through ``catalog`` (which also loads the
# torch runtime, which loads ``compress``, which loads this module) made ``import gemini_core.runtimes.catalog``
# fail with a circular import when it came first (``python -m bench.runtimes``).
from gemini_core.runtimes import onnxruntime_rt, openvino_rt  # noqa: F401  (each registers itself)
from gemini_core.runtimes.auto import choose_fastest
from gemini_core.runtimes.base import Inputs, RuntimeModel, available_runtimes, build
from gemini_core.runtimes.registry import implements
from gemini_core.runtimes.torch_kernels import build_dense, build_sparse

# execution name -> (runtime, precision)
EXECUTION_RUNTIMES = {
    "onnxruntime": ("onnxruntime", "fp32"),
    "onnxruntime-int8": ("onnxruntime", "int8"),
    "onnxruntime-int8-dynamic": ("onnxruntime", "int8-dynamic"),
    "openvino": ("openvino", "fp32"),
    "openvino-bf16": ("openvino", "bf16"),
    "openvino-int8": ("openvino", "int8"),
    "openvino-int4": ("openvino", "int4-weights"),  # the IR keeps 4-bit weights: the point's file stays small
}
CONVERTED_EXECUTIONS = (*EXECUTION_RUNTIMES, "auto")  # executions that need the scenario to build
CALIBRATION_EXAMPLES = 256  # training examples for static int8 (never test examples)
CALIBRATION_BATCH = 32
AUTO_TOLERANCE_POINTS = 1.0  # validation accuracy a faster candidate may lose against torch dense


class RuntimeModule(nn.Module):
    """A converted runtime as a module: ``forward(**inputs)`` -> fp32 logits, like every runnable model."""

    def __init__(self, built: RuntimeModel, choice: dict | None = None):
        super().__init__()
        self.built = built
        self.choice = choice  # auto: every candidate's accuracy and timing

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.built(inputs)

    def record(self) -> dict:
        out = {"runtime": self.built.record()}
        if self.choice is not None:
            out["auto_choice"] = self.choice
        return out


def calibration_batches(scenario, examples: int = CALIBRATION_EXAMPLES, batch: int = CALIBRATION_BATCH
                        ) -> list[Inputs]:
    train = scenario.splits.train
    count = min(examples, len(train))
    return [b.inputs for b in train.first(count).batches(batch)]


def _require(scenario, device: torch.device, name: str) -> None:
    if scenario is None:
        raise ConfigError(f"execution {name!r} converts the model with the scenario's data (calibration); "
                          "pass the scenario")
    if device.type != "cpu":
        raise ConfigError(f"execution {name!r} runs on the CPU; choose dense or sparse for {device.type}")


def _convert(stored: nn.Module, scenario, runtime: str, precision: str) -> RuntimeModel:
    reason = available_runtimes().get(runtime)
    if reason:
        raise ConfigError(f"runtime {runtime!r} cannot run here: {reason}")
    calibration = calibration_batches(scenario) if "int8" in precision and precision != "int8-dynamic" else None
    return build(runtime, copy.deepcopy(stored).float().eval(), scenario.example_inputs(2), calibration, precision)


def _summary(built: RuntimeModel) -> str:
    calib = built.calibration
    extra = f" ({calib.method}, {calib.examples} calibration examples)" if calib.examples else ""
    return f"{built.label}{extra}"


@torch.no_grad()
def _val_accuracy(model, scenario) -> float:
    val = scenario.splits.val
    correct = sum(int((model(**b.inputs).argmax(-1) == b.labels).sum()) for b in val.batches(256))
    return correct / max(len(val), 1)


def _calibration_effect(model: nn.Module, built: RuntimeModel, scenario) -> dict:
    """Validation accuracy before (the stored weights in float) and after static int8 calibration."""
    before, after = _val_accuracy(model.eval(), scenario), _val_accuracy(built, scenario)
    return calibration_verdict(before, after, len(scenario.splits.val))


def calibration_verdict(before: float, after: float, examples: int) -> dict:
    """Before/after validation accuracy with its verdict; a change of at most one example is no change.

    Counted in examples, not in points: (after - before) * 100 for exactly one example can land a rounding
    error above 100 / examples and read as a change.
    """
    delta = (after - before) * 100
    changed = round(abs(after - before) * max(examples, 1))  # examples that changed their verdict, net
    verdict = ("no measurable change" if changed <= 1
               else "calibration hurt accuracy" if delta < 0 else "calibrated model scored higher")
    return {"split": "validation", "examples": examples, "accuracy_before": before,
            "accuracy_after": after, "delta_points": delta, "verdict": verdict}


def _make_builder(name: str, runtime: str, precision: str):
    def build_on_runtime(model: nn.Module, config: CompressionConfig, quantized: dict, device: torch.device,
                         plan: dict, scenario=None):
        _require(scenario, device, name)
        built = _convert(model, scenario, runtime, precision)
        if "int8" in precision:  # a calibration that hurts must be visible next to the point
            built.details["calibration_effect"] = _calibration_effect(model, built, scenario)
        return RuntimeModule(built), _summary(built), {"model": _summary(built)}

    build_on_runtime.__name__ = f"build_{name.replace('-', '_')}"
    return build_on_runtime


for _name, (_runtime, _precision) in EXECUTION_RUNTIMES.items():
    implements(_name)(_make_builder(_name, _runtime, _precision))


@implements("auto")
def build_auto(model: nn.Module, config: CompressionConfig, quantized: dict, device: torch.device, plan: dict,
               scenario=None):
    """Torch dense at this storage and every available runtime, timed here; a runtime wins only beyond the noise."""
    _require(scenario, device, "auto")
    dense, dense_summary, dense_layers = build_dense(copy.deepcopy(model).eval(), config, quantized, device, plan)
    candidates: dict[str, nn.Module] = {"torch dense": dense}
    reasons = available_runtimes()
    for name, (runtime, precision) in EXECUTION_RUNTIMES.items():
        if reasons.get(runtime) is None:
            try:
                candidates[name] = RuntimeModule(_convert(model, scenario, runtime, precision))
            except ConfigError:
                continue  # a precision this runtime cannot build for this model competes no further
    layers = {"torch dense": (dense_summary, dense_layers)}
    if config.is_unstructured:  # sparse kernels compete, and win only where measured faster
        sparse, sparse_summary, sparse_layers = build_sparse(copy.deepcopy(model).eval(), config, quantized, device,
                                                             plan)
        candidates["torch sparse"] = sparse
        layers["torch sparse"] = (sparse_summary, sparse_layers)
    choice = choose_fastest(candidates, scenario.splits.test.first(32).inputs,
                            lambda candidate: _val_accuracy(candidate, scenario), AUTO_TOLERANCE_POINTS,
                            reference="torch dense")
    winner = candidates[choice["chosen"]]
    why = ("torch kept: no candidate beat it beyond the timing interval" if choice["chosen"] == "torch dense"
           else f"beat torch in every confirmed interval, within {AUTO_TOLERANCE_POINTS:g} validation points")
    summary = f"auto: {choice['chosen']} ({why})"
    if isinstance(winner, RuntimeModule):
        winner.choice = choice
        return winner, f"{summary}; {_summary(winner.built)}", {"model": json.dumps(choice["chosen"])}
    winner.auto_choice = choice  # plain attribute: measure_point records it
    kernels, per_layer = layers[choice["chosen"]]
    return winner, f"{summary}; {kernels}", per_layer


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:  # resident pages of this process
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_during(run) -> tuple[int, int]:
    """(RSS before, highest RSS sampled every 0.2 ms while ``run()`` runs): the runtimes allocate outside torch."""
    before = _rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0002)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        run()
    finally:
        done.set()
        watcher.join()
    return before, max(peak[0], _rss_bytes())


@torch.no_grad()
def runtime_figures(model: nn.Module, batch: Inputs) -> dict:
    """What a point records about a converted runtime (or ``auto``'s choice); {} for plain torch models.

    Memory: the torch profiler cannot see ONNX Runtime's or OpenVINO's allocations, so the weights are
    the runtime's serialized bytes and the activations the growth of the process's resident memory
    while one batch runs (sampled; labelled so in ``memory_method``).
    """
    out: dict = {}
    choice = getattr(model, "auto_choice", None)
    if choice is not None:
        out["auto_choice"] = choice
    if not isinstance(model, RuntimeModule):
        return out
    out.update(model.record())
    if os.path.exists("/proc/self/statm"):
        before, peak = _peak_rss_during(lambda: model(**batch))
        weights = int(model.built.size_bytes)
        out.update({"weight_memory_bytes": weights, "activation_peak_bytes": int(peak - before),
                    "peak_memory_bytes": weights + int(peak - before),
                    "memory_method": "runtime file bytes + resident-memory growth sampled while one batch runs"})
    return out
