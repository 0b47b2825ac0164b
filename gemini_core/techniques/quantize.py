"""Weight quantization: integer codes with scales (and zero-points), per-tensor, per-channel or group-wise.

The grid is ``config.storage_grid`` (a ``QuantGrid``): 8 bits are symmetric (zero-point 0), which is what
int8 kernels take, with codes in -127..127 (the symmetric range, so -w rounds to -code). Below 8 bits the
grid is affine (min..max, with 0 always on the grid): at 2-4 bits a symmetric grid wastes a level.
Either way 0.0 maps exactly to a code, so pruned weights stay exactly zero.
Scales are rounded to fp16 before the codes are computed: the stored scale is the one used.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gemini_core.config import storage_grid
from gemini_core.errors import ConfigError
from gemini_core.techniques.grid import QuantGrid

QUANTIZABLE = (nn.Linear, nn.Conv2d, nn.Embedding)
_MIN_SCALE = 1e-6  # all-zero groups: any positive fp16-representable scale works


@dataclass
class QuantizedWeight:
    """Codes laid out as (groups, group_len); one scale (and zero-point) per group."""

    codes: torch.Tensor  # int16 holding the integer codes, shape (groups, group_len)
    scale: torch.Tensor  # fp16, (groups,)
    zero_point: torch.Tensor | None  # uint8, (groups,); None for symmetric
    bits: int
    shape: tuple  # the weight's shape
    granularity: str

    @property
    def grid(self) -> QuantGrid:
        return QuantGrid.parse(self.bits, self.granularity, symmetric=self.zero_point is None)

    @property
    def rows(self) -> int:
        """Rows of the codes in the weight's element order: one per output channel, or 1 per-tensor."""
        return 1 if self.grid.granularity == "tensor" else self.shape[0]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def _grouped(weight: torch.Tensor, grid: QuantGrid) -> tuple[torch.Tensor, int]:
    """Reshape to (groups, group_len) (``grid.group_dims``), padding rows with zeros to a whole number of groups."""
    w = weight.detach().float()
    groups, size = grid.group_dims(tuple(weight.shape))
    # rows: 1 per-tensor, else one per output channel (per-channel: each row is one group)
    rows = w.reshape(1 if grid.granularity == "tensor" else w.shape[0], -1)
    pad = groups * size // rows.shape[0] - rows.shape[1]
    if pad:
        rows = torch.nn.functional.pad(rows, (0, pad))
    return rows.reshape(groups, size), pad


def quantize_tensor(weight: torch.Tensor, bits: int, granularity: str) -> QuantizedWeight:
    return quantize_on_grid(weight, storage_grid(bits, granularity))


def quantize_on_grid(weight: torch.Tensor, grid: QuantGrid) -> QuantizedWeight:
    """``weight``'s codes on ``grid``: one the storage holds (``storage_grid``: 8 bits symmetric, 2-7 asymmetric)."""
    if grid.is_float or grid.bits > 8 or grid.symmetric != (grid.bits == 8):
        raise ConfigError(f"the classifier's storage holds 8-bit symmetric and 2-7-bit asymmetric weights, not "
                          f"{grid.label()} {'symmetric' if grid.symmetric else 'asymmetric'}")
    groups, _ = _grouped(weight, grid)
    bits = grid.bits
    if grid.symmetric:
        qmax = grid.qmax
        amax = groups.abs().amax(dim=1)
        scale = (amax / qmax).clamp_min(_MIN_SCALE).half()
        codes = torch.round(groups / scale.float()[:, None]).clamp(-qmax, qmax)
        zero_point = None
    else:
        qmax = grid.qmax
        lo = groups.amin(dim=1).clamp(max=0)
        hi = groups.amax(dim=1).clamp(min=0)
        scale = ((hi - lo) / qmax).clamp_min(_MIN_SCALE).half()
        zero = torch.round(-lo / scale.float()).clamp(0, qmax)
        codes = (torch.round(groups / scale.float()[:, None]) + zero[:, None]).clamp(0, qmax)
        zero_point = zero.to(torch.uint8)
    return QuantizedWeight(codes.to(torch.int16), scale, zero_point, bits, tuple(weight.shape),
                           grid.granularity_text)


def dequantize(q: QuantizedWeight, dtype=torch.float32) -> torch.Tensor:
    codes = q.codes.float()
    if q.zero_point is not None:
        codes = codes - q.zero_point.float()[:, None]
    values = codes * q.scale.float()[:, None]
    rows = q.rows
    values = values.reshape(rows, -1)
    cols = q.numel // rows
    return values[:, :cols].reshape(q.shape).to(dtype)


def quantizable_weights(model: nn.Module, skip: set[str] | None = None) -> list[tuple[str, nn.Module]]:
    skip = skip or set()
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QUANTIZABLE) and name not in skip]


def quantize_weights_(model: nn.Module, bits: int, granularity: str, skip: set[str] | None = None
                      ) -> dict[str, QuantizedWeight]:
    """Replace weights by their quantized values in place (weight-only); returns the codes by parameter name."""
    quantized = {}
    if bits >= 16:
        return quantized
    with torch.no_grad():
        for name, module in quantizable_weights(model, skip):
            q = quantize_tensor(module.weight, bits, granularity)
            module.weight.copy_(dequantize(q, module.weight.dtype))
            quantized[f"{name}.weight" if name else "weight"] = q
    return quantized


def quantization_error(weight: torch.Tensor, bits: int, granularity: str) -> float:
    """Relative L2 error of quantizing ``weight`` (for tests and the sensitivity view)."""
    q = dequantize(quantize_tensor(weight, bits, granularity))
    return float((q - weight).norm() / weight.norm().clamp_min(1e-12))


def quantize_layers_(model: nn.Module, settings: dict) -> dict[str, QuantizedWeight]:
    """Per-layer ``quantize_weights_``: ``settings`` maps layer name -> LayerSetting (overrides.py).

    Layers at 8 bits or fewer get codes; 16-bit layers are rounded to bf16 by the caller
    (``overrides.round_to_storage_``), 32-bit and skipped layers stay as they are.
    """
    quantized = {}
    with torch.no_grad():
        for name, module in quantizable_weights(model):
            setting = settings.get(name)
            if setting is None or setting.skip or setting.bits >= 16:
                continue
            q = quantize_tensor(module.weight, setting.bits, setting.granularity)
            module.weight.copy_(dequantize(q, module.weight.dtype))
            quantized[f"{name}.weight"] = q
    return quantized
