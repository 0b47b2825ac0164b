"""Quantization-aware recovery: train against the exact weights the quantizer will store.

Every quantizable weight (Linear, Conv2d, Embedding: what ``quantize.quantize_weights_`` touches)
gets a ``torch.nn.utils.parametrize`` parametrization, ``WeightTransform``, whose forward is

    weight -> weight * mask            (optional: unstructured / 2:4 zeros kept while training)
           -> dequantize(quantize_tensor(.., bits, granularity))   (optional: fake quantization)

The fake quantization is ``gemini_core.techniques.quantize``'s own math (same grid, same fp16 scales, same
rounding), wrapped in a straight-through estimator: the forward pass returns the dequantized
values exactly, the backward pass hands the gradient to the float weight unchanged. When the
parametrizations are removed (``detach_transforms``) the float weights stay (with the mask baked
in), so ``quantize_weights_`` on the recovered model reproduces, bit for bit, the weights the
model was trained against.

Activations. No activation is quantized with a static range anywhere in this product: below 8
bits the kernels are weight-only (weights dequantized, activations in float), and the int8 path is
torch's *dynamic* quantized Linear, which measures each batch's activation range when it runs.
So there is no activation range to calibrate, and QAT here fakes weights only. (A static int8
activation path would need observers calibrated on a few training batches before QAT starts.)
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

from gemini_core.techniques.quantize import dequantize, quantizable_weights, quantize_tensor
from gemini_core.training.loop import train_steps


class _FakeQuantSTE(torch.autograd.Function):
    """Forward: the stored (dequantized) weight, exactly. Backward: identity (straight-through)."""

    @staticmethod
    def forward(ctx, weight, bits, granularity):
        return dequantize(quantize_tensor(weight, bits, granularity), weight.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


def fake_quantize(weight: torch.Tensor, bits: int, granularity: str) -> torch.Tensor:
    """``weight`` rounded to the stored grid, with a straight-through gradient."""
    return _FakeQuantSTE.apply(weight, int(bits), granularity)


class WeightTransform(nn.Module):
    """Parametrization: optional mask, then optional fake quantization (STE)."""

    def __init__(self, mask: torch.Tensor | None = None, bits: int | None = None, granularity: str = "per-channel"):
        super().__init__()
        self.register_buffer("mask", None if mask is None else mask.detach().to(torch.float32).clone())
        self.bits = int(bits) if bits is not None and int(bits) <= 8 else None
        self.granularity = granularity

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.mask is not None:
            weight = weight * self.mask.to(weight.dtype)
        if self.bits is not None:
            weight = fake_quantize(weight, self.bits, self.granularity)
        return weight

    def extra_repr(self) -> str:
        return f"mask={self.mask is not None}, bits={self.bits}, granularity={self.granularity}"


def transform_of(module: nn.Module) -> WeightTransform | None:
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations.weight:
            if isinstance(p, WeightTransform):
                return p
    return None


def attach_transforms(model: nn.Module, bits: int | None = None, granularity: str = "per-channel",
                      masks: dict[str, torch.Tensor] | None = None) -> list[str]:
    """Attach a ``WeightTransform`` to every quantizable weight (and to every masked one).

    ``bits`` None (or above 8): masks only. ``masks``: module name -> 0/1 tensor of the weight's shape.
    Returns the names of the modules that got one.
    """
    masks = masks or {}
    fake = bits is not None and int(bits) <= 8
    done = []
    modules = dict(quantizable_weights(model)) if fake else {}
    for name in masks:
        modules.setdefault(name, model.get_submodule(name))
    for name, module in modules.items():
        if transform_of(module) is not None:
            raise RuntimeError(f"{name} already has a weight transform")
        mask = masks.get(name)
        if mask is not None and mask.shape != module.weight.shape:
            raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, the weight {tuple(module.weight.shape)}")
        parametrize.register_parametrization(
            module, "weight", WeightTransform(mask, bits if fake else None, granularity), unsafe=True)
        done.append(name)
    return done


def detach_transforms(model: nn.Module) -> dict[str, torch.Tensor]:
    """Remove every ``WeightTransform``: float weights stay, masks are baked in (zeros stay zero).

    Returns the masks that were attached (module name -> mask), so they can be attached again
    after a structural pruning step.
    """
    masks = {}
    for name, module in list(model.named_modules()):
        transform = transform_of(module)
        if transform is None:
            continue
        mask = transform.mask
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        if mask is not None:
            with torch.no_grad():
                module.weight.mul_(mask.to(module.weight.dtype))
            masks[name] = mask.detach().cpu()
    return masks


def clone(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that is safe for parametrized modules.

    A deep copy of a parametrized module shares its generated class (``ParametrizedLinear``, ...)
    with the original, and removing the parametrization from one deletes the ``weight`` property
    from that shared class, breaking the other. The copy's modules get classes of their own.
    """
    copied = copy.deepcopy(model)
    for module in copied.modules():
        if parametrize.is_parametrized(module):
            cls = type(module)
            body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
            module.__class__ = type(cls.__name__, cls.__bases__, body)
    return copied


def has_transforms(model: nn.Module) -> bool:
    return any(transform_of(m) is not None for m in model.modules())


def qat_recover(model: nn.Module, scenario, bits: int, granularity: str, steps: int, lr: float,
                batch_size: int, keep_zeros: bool = False, seed: int = 0, device="cpu",
                should_stop=None) -> float:
    """Quantization-aware fine-tuning for ``steps`` steps (the sweep's ``recovery="qat"``).

    ``keep_zeros``: pruned (zero) weights stay zero (a mask per weight that has zeros), as the
    plain fine-tuning keeps its pruning masks. Returns the last loss; the model is left in float
    (``quantize_weights_`` then gives exactly the weights it was trained against).
    """
    masks = {}
    if keep_zeros:
        for name, module in quantizable_weights(model):
            zeros = module.weight.detach() == 0
            if bool(zeros.any()):
                masks[name] = (~zeros).float()
    torch.manual_seed(seed)
    model.to(device)
    attach_transforms(model, bits, granularity, masks)
    try:
        loss = train_steps(model, scenario.splits.train, steps, lr=lr, batch_size=batch_size, seed=seed,
                           device=device, should_stop=should_stop, schedule=scenario.recovery_schedule)
    finally:
        detach_transforms(model)
        model.to("cpu")
    model.eval()
    return loss
