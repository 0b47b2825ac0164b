"""torch eager as a runtime: fp32, bf16, and int8 through the engine's own kernels (``kernels.py``).

int8 is what ``compress`` builds at 8 bits per-channel: the engine's symmetric codes run in torch's
dynamically quantized Linear (activations quantized per batch, so no calibration). Its size is the
engine's safetensors bytes at those bits, the file ``export`` writes.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from gemini_core.compress.codec import encode_state, to_bytes
from gemini_core.config import CompressionConfig
from gemini_core.runtimes.base import Inputs, RuntimeModel, register_runtime, thread_count
from gemini_core.runtimes.torch_kernels import build_execution_model
from gemini_core.techniques.quantize import quantize_weights_

TORCH_PRECISIONS = ("fp32", "bf16", "int8")


def _storage_bytes(stored: nn.Module, quantized: dict, bits: int) -> int:
    """Bytes of the engine's safetensors file for ``stored`` (the exporter's format)."""
    tensors, layout = encode_state(stored.state_dict(), quantized, bits)
    return len(to_bytes(tensors, layout))


def _runnable(model: nn.Module, precision: str) -> tuple[nn.Module, int, str]:
    """(module to call, serialized bytes, kernels as built) for one precision."""
    stored = copy.deepcopy(model).float().cpu().eval()
    bits = {"fp32": 32, "bf16": 16, "int8": 8}[precision]
    quantized = quantize_weights_(stored, bits, "per-channel")
    runnable, backend, _ = build_execution_model(stored, CompressionConfig(bits=bits, granularity="per-channel"),
                                                 quantized, torch.device("cpu"))
    return runnable.eval(), _storage_bytes(stored, quantized, bits), backend


@register_runtime("torch")
class TorchRuntime:
    name = "torch"
    precisions = TORCH_PRECISIONS

    def available(self) -> str | None:
        return None  # the engine itself runs on torch

    def build(self, model: nn.Module, example_inputs: Inputs, calibration: list[Inputs] | None,
              precision: str, threads: int | None = None) -> RuntimeModel:
        threads = thread_count(threads)
        runnable, size_bytes, backend = _runnable(model, precision)

        @torch.inference_mode()
        def run(inputs: Inputs) -> torch.Tensor:
            # torch's thread count is process-wide: set it per call so a point runs with the count it records.
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            return runnable(**inputs).float()

        return RuntimeModel("torch", precision, run, size_bytes, threads=threads,
                            details={"backend": backend, "torch": torch.__version__})
