"""``dense-int8``: torch's int8 kernels for a point stored at any bit width (storage bits != compute dtype).

The point's file keeps its storage (4-bit group-32 codes, a 2-bit embedding table, ...); when the model is
built, every Linear's stored values (the dequantized codes) are requantized per output channel to
symmetric int8 and run in torch's dynamically quantized Linear (activations quantized per batch, no
calibration), the kernels the 8-bit ``dense`` execution uses. Everything else (embeddings, layer norms)
runs as stored, in fp32. At 8 bits per-channel the codes are the stored ones; below 8 bits the int8 grid is
finer than the stored one, so the requantization error is at most half an int8 step per weight (the
accuracy is measured on these kernels like any point's). The file shipped is the storage (the point's
``size_bytes``); what the process holds after the build (int8 Linear weights, fp32 embeddings) is larger:
``measure_point`` records it as ``weight_memory_bytes``.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from gemini_core.config import CompressionConfig
from gemini_core.errors import ConfigError
from gemini_core.runtimes.registry import implements
from gemini_core.runtimes.torch_kernels import int8_linear, set_module
from gemini_core.techniques.plan import LayerSetting
from gemini_core.techniques.quantize import QuantizedWeight

NAME = "dense-int8"


@implements(NAME)
def build_dense_int8(model: nn.Module, config: CompressionConfig, quantized: dict[str, QuantizedWeight],
                     device: torch.device, plan: dict[str, LayerSetting], scenario=None
                     ) -> tuple[nn.Module, str, dict[str, str]]:
    """Every Linear that is not skipped on torch's int8 kernels; the rest fp32 as stored (CPU only)."""
    if device.type != "cpu":
        raise ConfigError(f"execution {NAME!r} runs torch's int8 kernels on the CPU; choose dense for {device.type}")
    skipped = {n for n, s in plan.items() if s.skip}
    layers: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated but still the CPU int8 path
        for name, module in list(model.named_modules()):
            if isinstance(module, nn.Linear) and name not in skipped:
                set_module(model, name, int8_linear(module))
                layers[name] = "int8-dynamic (requantized from the stored values)"
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)) and name not in layers:
            layers[name] = "dense-fp32"
    model = model.to(device)
    counts: dict[str, int] = {}
    for kind in layers.values():
        counts[kind] = counts.get(kind, 0) + 1
    summary = ", ".join(f"{k} x{v}" if len(counts) > 1 else k for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return model, summary or NAME, layers
