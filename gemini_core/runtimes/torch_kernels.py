"""Execution backends: which kernels actually run a compressed model.

- dense fp32 (weights already dequantized when bits < 8: "weight-only");
- bf16 for 16-bit points;
- int8: torch's dynamically quantized Linear (fbgemm / x86 / qnnpack) fed with our own int8
  codes and scales, so the stored codes are the ones that run;
- sparse: CSR ``torch.sparse.mm`` for Linear layers (CPU or CUDA), and 2:4 semi-structured
  sparse tensors on CUDA when the weights have that pattern.
Every model built here reports the backend each layer really got.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from gemini_core.config import CompressionConfig
from gemini_core.errors import ConfigError
from gemini_core.runtimes.registry import EXECUTIONS, implements
from gemini_core.techniques.plan import LayerSetting, is_mixed, resolve_layers
from gemini_core.techniques.quantize import QuantizedWeight


class CastInputs(nn.Module):
    """Runs a model in another float dtype: float inputs cast in, logits cast back to fp32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype, convert: bool = True):
        super().__init__()
        self.model = model.to(dtype) if convert else model
        self.dtype = dtype

    def forward(self, **inputs):
        cast = {k: (v.to(self.dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
        return self.model(**cast).float()


class SparseLinear(nn.Module):
    """A Linear layer whose weight is a CSR sparse matrix (``torch.sparse.mm``)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with warnings.catch_warnings():  # torch calls CSR "beta" on every conversion: a server log line per point
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            weight = linear.weight.detach().float().to_sparse_csr()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.float32)
        out = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def int8_linear(linear: nn.Linear, scale: torch.Tensor | None = None, per_tensor: bool = False) -> nn.Module:
    """``linear`` on torch's dynamic int8 kernels: symmetric int8 codes of its weights at ``scale`` (the stored
    8-bit codes' scale: requantizing gives the same codes), else per output channel from the weights' range (a
    point stored at other bits, computed in int8)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    weight = linear.weight.detach().float()
    if scale is None:
        scale = (weight.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    scale = scale.float()
    if per_tensor:
        qweight = torch.quantize_per_tensor(weight, float(scale[0]), 0, torch.qint8)
    else:
        qweight = torch.quantize_per_channel(weight, scale.double(), torch.zeros_like(scale, dtype=torch.long),
                                             0, torch.qint8)
    layer = DynamicLinear(linear.in_features, linear.out_features, bias_=linear.bias is not None, dtype=torch.qint8)
    layer.set_weight_bias(qweight, None if linear.bias is None else linear.bias.detach().float())
    return layer


def _int8_linear(linear: nn.Linear, q: QuantizedWeight) -> nn.Module:
    return int8_linear(linear, q.scale, per_tensor=q.granularity == "per-tensor")


class Bf16Layer(nn.Module):
    """One layer computed in bf16 inside an fp32 model (a per-layer 16-bit setting)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer.to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x.to(torch.bfloat16) if x.is_floating_point() else x)
        return out.float()


def _build_mixed(model: nn.Module, config: CompressionConfig, quantized: dict[str, QuantizedWeight],
                 device: torch.device, settings: dict[str, LayerSetting]) -> tuple[nn.Module, str, dict[str, str]]:
    """Per-layer kernels for a config with per-layer bits: int8 where a Linear is at 8 bits per-tensor or
    per-channel (CPU), bf16 where a layer is at 16 bits, fp32 elsewhere (weight-only below 8 bits)."""
    layers: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated but still the CPU int8 path
        for name, setting in settings.items():
            module = model.get_submodule(name)
            q = quantized.get(f"{name}.weight")
            if (isinstance(module, nn.Linear) and q is not None and setting.bits == 8 and device.type == "cpu"
                    and setting.granularity in ("per-tensor", "per-channel")):
                set_module(model, name, _int8_linear(module, q))
                layers[name] = "int8-dynamic"
            elif setting.bits == 16 and not setting.skip:
                set_module(model, name, Bf16Layer(module))
                layers[name] = "dense-bf16"
            elif q is not None:
                layers[name] = "dense-fp32 (weight-only int%d, dequantized)" % q.bits
            else:
                layers[name] = "dense-fp32"
    return model.to(device), _summary(layers, "dense"), layers


def _has_2_4_pattern(weight: torch.Tensor) -> bool:
    w = weight.detach().reshape(weight.shape[0], -1)
    if w.shape[1] % 4:
        return False
    return bool(((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) <= 2).all())


def build_execution_model(model: nn.Module, config: CompressionConfig, quantized: dict[str, QuantizedWeight],
                          device: torch.device, plan: dict[str, LayerSetting] | None = None, scenario=None
                          ) -> tuple[nn.Module, str, dict[str, str]]:
    """A copy of ``model`` running on the kernels ``config`` asks for; returns (model, backend, per-layer).

    ``plan``: the per-layer settings ``compress`` resolved once (resolved here when not given).
    ``scenario``: its training examples calibrate the converted runtimes (runtimes/converted.py).
    """
    if plan is None:
        plan = resolve_layers(model, config)
    backend = EXECUTIONS[config.execution]
    if backend.build is None:
        raise ConfigError(f"execution {config.execution!r} is declared but not loaded; import gemini_core.compress")
    return backend.build(copy.deepcopy(model).eval(), config, quantized, torch.device(device), plan,
                         scenario=scenario)


def _linears(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


@implements("sparse")
def build_sparse(model: nn.Module, config: CompressionConfig, quantized: dict[str, QuantizedWeight],
                 device: torch.device, plan: dict[str, LayerSetting], scenario=None
                 ) -> tuple[nn.Module, str, dict[str, str]]:
    """CSR sparse Linear kernels on the CPU; 2:4 semi-structured fp16 kernels on CUDA for a 2:4 model."""
    layers: dict[str, str] = {}
    skipped = {n for n, s in plan.items() if s.skip}
    linears = [(n, m) for n, m in _linears(model) if n not in skipped]  # a skipped layer stays dense
    semi = device.type == "cuda" and config.prune_method == "2:4"
    if semi:
        from torch.sparse import to_sparse_semi_structured

        model = model.half().to(device)  # move first: semi-structured weights are made in place on the GPU
    for name, linear in linears:
        if semi and _has_2_4_pattern(linear.weight):
            try:
                linear.weight = nn.Parameter(to_sparse_semi_structured(linear.weight.detach()))
                layers[name] = "cuda-2:4-semi-structured-fp16"
                continue
            except (RuntimeError, ValueError) as exc:  # shape not supported by the kernel
                layers[name] = f"dense-fp16 (2:4 refused: {str(exc)[:60]})"
                continue
        if not semi:
            set_module(model, name, SparseLinear(linear))
            layers[name] = "sparse-csr-fp32"
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)) and name not in layers:
            layers[name] = "dense-fp16" if semi else "dense-fp32"
    if semi:  # already fp16; converting again would touch the semi-structured weights
        model = CastInputs(model, torch.float16, convert=False)
    summary = _summary(layers, "sparse")
    return (model if semi else model.to(device)), summary, layers


@implements("dense")
def build_dense(model: nn.Module, config: CompressionConfig, quantized: dict[str, QuantizedWeight],
                device: torch.device, plan: dict[str, LayerSetting], scenario=None
                ) -> tuple[nn.Module, str, dict[str, str]]:
    """fp32; bf16 at 16 bits; torch's int8 kernels at 8 bits per-tensor / per-channel on the CPU."""
    if is_mixed(config):
        return _build_mixed(model, config, quantized, device, plan)
    layers: dict[str, str] = {}
    linears = _linears(model)
    if config.bits == 16:
        model = CastInputs(model, torch.bfloat16)
        return model.to(device), "dense-bf16", {n: "dense-bf16" for n, _ in linears}
    int8_ok = (config.bits == 8 and device.type == "cpu"
               and config.granularity in ("per-tensor", "per-channel"))
    if int8_ok:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated but still the CPU int8 path
            for name, linear in linears:
                q = quantized.get(f"{name}.weight")
                if q is not None:
                    set_module(model, name, _int8_linear(linear, q))
                    layers[name] = "int8-dynamic"
    weight_only = " (weight-only int%d, dequantized)" % config.bits if config.bits <= 8 else ""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            layers.setdefault(name, "dense-fp32" + weight_only)
    return model.to(device), _summary(layers, "dense"), layers


def _summary(layers: dict[str, str], fallback: str) -> str:
    if not layers:
        return fallback
    counts: dict[str, int] = {}
    for kind in layers.values():
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{k} x{v}" if len(counts) > 1 else k for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
