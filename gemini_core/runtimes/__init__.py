"""Runtimes a model can be executed on (torch, ONNX Runtime, OpenVINO), and choosing among them.

``build("onnxruntime", model, example_inputs, calibration, "int8")`` -> a ``RuntimeModel`` called
with the input dict; ``available_runtimes()`` says which can run here and why not;
``auto.choose_fastest`` times candidates on this machine. Heavy packages are imported only when a
runtime is built.
"""
from .base import (CalibrationInfo, RuntimeModel, available_runtimes, build, get_runtime, register_runtime,
                   runtime_names)
from .cpu import cpu_record

__all__ = ["CalibrationInfo", "RuntimeModel", "available_runtimes", "build", "cpu_record", "get_runtime",
           "register_runtime", "runtime_names"]
