"""Every runtime implementation, loaded: import ``build`` and ``available_runtimes`` from here.

``runtimes/base.py`` holds the registry; importing this module registers torch eager, ONNX Runtime
and OpenVINO (each imports its heavy package only when a model is built on it). It sits above the
compress stage because the torch runtime measures its size with the engine's own codec.
"""
from __future__ import annotations

from gemini_core.runtimes import onnxruntime_rt, openvino_rt, torch_rt  # noqa: F401  (each registers itself)
from gemini_core.runtimes.base import available_runtimes, build, get_runtime, runtime_names

__all__ = ["available_runtimes", "build", "get_runtime", "runtime_names"]
