"""The execution-backend registry: how a compressed model runs (dense kernels, sparse kernels, ...).

Each backend is declared here by name (so the config, the CLI and the pages can list and
validate it without importing kernels) and implemented by one module that registers its builder
with ``@implements(name)``. A builder takes ``(stored_model, config, quantized, device, plan, scenario)``
and returns ``(runnable model, backend summary, per-layer kernel names)``; converted runtimes use the
scenario's training examples for calibration.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Execution:
    name: str
    help: str
    build: Callable | None = field(default=None, repr=False)  # set by the implementing module


EXECUTIONS: dict[str, Execution] = {}


def declare_execution(name: str, help: str) -> Execution:
    EXECUTIONS[name] = Execution(name, help)
    return EXECUTIONS[name]


def implements(name: str):
    """Decorator: the builder of a declared execution backend."""

    def wrap(build: Callable) -> Callable:
        EXECUTIONS[name].build = build
        return build

    return wrap


declare_execution("dense", "dense kernels: fp32, bf16 at 16 bits, int8 kernels at 8 bits on the CPU")
declare_execution("dense-int8", "torch's int8 kernels for every Linear whatever the storage bits: the stored values "
                                "requantized per channel to int8 when the model is built; the file keeps the "
                                "storage (e.g. 4-bit), the process holds int8 (CPU)")
declare_execution("sparse", "sparse kernels (CSR on the CPU, 2:4 semi-structured on CUDA) for pruned weights")
declare_execution("onnxruntime", "ONNX Runtime, fp32 compute of the stored weights (CPU)")
declare_execution("onnxruntime-int8", "ONNX Runtime, static int8 (QDQ) of the weight layers, calibrated on training "
                                     "examples (CPU)")
declare_execution("onnxruntime-int8-dynamic", "ONNX Runtime, dynamic int8: int8 weights, activations quantized per "
                                             "batch, no calibration (CPU)")
declare_execution("openvino", "OpenVINO, fp32 compute of the stored weights (CPU)")
declare_execution("openvino-bf16", "OpenVINO, bf16 compute (CPU)")
declare_execution("openvino-int8", "OpenVINO, int8 through NNCF post-training quantization with calibration (CPU)")
declare_execution("openvino-int4", "OpenVINO, 4-bit group-32 weights (NNCF weight compression, data-free) computed by "
                                   "the CPU plugin: the runtime file keeps 4-bit weights (CPU)")
declare_execution("auto", "time torch and every runtime here; keep a runtime within 1 validation point only where "
                          "it beats torch at the same storage beyond the timing interval")
