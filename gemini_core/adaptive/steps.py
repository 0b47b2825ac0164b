"""The structure while adaptive training runs: planning a structured step, taking it, masks, MACs.

A structured step prunes so that every prunable layer keeps ``1 - ratio`` of the width it had
when training started (``layer_widths`` / ``head_counts`` taken then), so a run of steps lands
exactly where one-shot pruning to the same ratio would. The pruning itself, the importance
scores and the mask functions are ``techniques.prune`` and the method registry's; this module
only turns "``ratio`` of the starting widths" into per-layer ratios of the current ones.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from gemini_core.measure import count_macs
from gemini_core.techniques.methods import PRUNE_METHODS
from gemini_core.techniques.prune import prunable_layers, pruner_kwargs, pruner_step
from gemini_core.techniques.qat import clone, detach_transforms, has_transforms

# adaptive mask mode -> the registered method whose mask function it applies
MASK_METHODS = {"unstructured": "magnitude-unstructured", "2:4": "2:4"}


def _out_width(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def layer_widths(model: nn.Module) -> dict[str, int]:
    """Output width of every Linear / Conv2d by name (what ratios are measured against)."""
    return {name: _out_width(m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


def head_counts(model: nn.Module, scenario) -> dict[str, int]:
    """Attention heads of every head-pruned layer by name."""
    spec = scenario.prune_spec(model)
    names = {id(m): n for n, m in model.named_modules()}
    return {names[id(m)]: int(h) for m, h in spec.num_heads.items()}


def _width_ratios(model: nn.Module, spec, ratio: float, widths0: dict[str, int]) -> tuple[dict, list[str]]:
    """Per-module ratios of the current width that leave ``1 - ratio`` of ``widths0`` (rounded to ``round_to``)."""
    ignored = {id(m) for layer in spec.ignored_layers for m in layer.modules()}
    head_layers = {id(m) for m in spec.num_heads}
    notes: list[str] = []
    ratio_dict = {}
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)) or id(module) in ignored or id(module) in head_layers:
            continue
        original, current = widths0.get(name), _out_width(module)
        if not original:
            continue
        keep = int(original * (1 - ratio))
        if spec.round_to:
            rounded = keep - keep % spec.round_to
            if rounded > 0:
                keep = rounded
            elif keep > 0:
                notes.append(f"{name}: {keep} channels not rounded to a multiple of {spec.round_to}")
        keep = max(keep, 1)
        if keep < current:
            # +0.5: torch-pruning keeps int(current * (1 - r)) channels; this makes that exactly ``keep``.
            ratio_dict[module] = 1 - (keep + 0.5) / current
    return ratio_dict, notes


def _head_ratios(model: nn.Module, spec, ratio: float, heads0: dict[str, int]) -> dict:
    """Per-module head ratios of the current heads that leave what one-shot pruning to ``ratio`` leaves."""
    names = {id(m): n for n, m in model.named_modules()}
    head_dict = {}
    for module, heads in spec.num_heads.items():
        original = heads0.get(names[id(module)], heads)
        target_removed = math.ceil(min(ratio, (original - 1) / original) * original) if original > 1 else 0
        remove = target_removed - (original - heads)
        if remove > 0:
            head_dict[module] = (remove - 0.5) / heads  # torch-pruning removes ceil(r * heads) heads
    return head_dict


def plan_step(model: nn.Module, scenario, ratio: float, widths0: dict[str, int], heads0: dict[str, int]):
    """Per-layer torch-pruning ratios (relative to the current widths) that reach ``ratio`` of ``widths0``.

    Returns (prune spec, width ratios, head ratios, the other MetaPruner arguments, notes).
    """
    spec = scenario.prune_spec(model)
    ratio_dict, notes = _width_ratios(model, spec, ratio, widths0)
    kwargs = pruner_kwargs(spec, 0.0)
    kwargs["round_to"] = None  # rounded above, against the original widths
    head_dict = _head_ratios(model, spec, ratio, heads0)
    # torch-pruning only visits a group with a positive width ratio; with prune_head_dims=False
    # the width ratio of q/k/v removes nothing itself, the head ratio decides.
    ratio_dict.update(head_dict)
    if spec.num_heads:
        kwargs.update(head_pruning_ratio=0.0, head_pruning_ratio_dict=head_dict or None)
    return spec, ratio_dict, head_dict, kwargs, notes


def step_changes_structure(model: nn.Module, scenario, ratio: float, widths0: dict[str, int],
                           heads0: dict[str, int]) -> bool:
    """Whether pruning to ``ratio`` removes anything (rounding to ``round_to`` often makes a step a no-op)."""
    _, ratio_dict, head_dict, _, _ = plan_step(model, scenario, ratio, widths0, heads0)
    return bool(ratio_dict or head_dict)


def structured_step(model: nn.Module, scenario, method: str, ratio: float, widths0: dict[str, int],
                    heads0: dict[str, int], seed: int = 0) -> tuple[list, list[str]]:
    """Prune ``model`` in place so every prunable layer keeps ``1 - ratio`` of its width in ``widths0``.

    One fresh torch-pruning ``MetaPruner`` per step with a per-layer ratio relative to the current
    width, so a step lands exactly where a one-shot pruning to ``ratio`` would (same rounding to
    ``round_to``, same head counts), whatever steps came before or were rolled back.
    Returns (torch-pruning's history of this step, notes).
    """
    spec, ratio_dict, head_dict, kwargs, notes = plan_step(model, scenario, ratio, widths0, heads0)
    if not ratio_dict and not head_dict:
        return [], notes
    torch.manual_seed(seed)
    pruner = pruner_step(model, example_inputs(scenario, model), method, scenario,
                         pruning_ratio_dict=ratio_dict or None, **kwargs)
    model.zero_grad(set_to_none=True)
    if spec.after_prune is not None:
        spec.after_prune(model)
    return [(str(n), bool(out), [int(i) for i in idx]) for n, out, idx in pruner.pruning_history()], notes


def device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def example_inputs(scenario, model: nn.Module, batch: int = 2) -> dict[str, torch.Tensor]:
    """``scenario``'s example inputs on ``model``'s device."""
    device = device_of(model)
    return {k: v.to(device) for k, v in scenario.example_inputs(batch).items()}


def compute_masks(model: nn.Module, scenario, mode: str, ratio: float) -> dict[str, torch.Tensor]:
    """Unstructured (per-layer magnitude, share ``ratio`` zero) or 2:4 masks for the maskable layers.

    The mask functions are the registered methods' (``MASK_METHODS``); a layer the mask cannot
    apply to (2:4 with an input size not a multiple of 4), or that would lose nothing, stays dense.
    """
    masks = {}
    if mode == "none" or (mode == "unstructured" and ratio <= 0):
        return masks
    method = PRUNE_METHODS[MASK_METHODS[mode]]
    for name, module in prunable_layers(model, scenario.prune_spec(model)):
        weight = module.weight.detach()
        if method.fixed_ratio is None and round(ratio * weight.numel()) <= 0:
            continue
        try:
            masks[name] = method.mask(weight, ratio).float()
        except ValueError:
            continue  # input size not a multiple of 4: the layer stays dense, as in prune.apply_masks
    return masks


def count_macs_of(model: nn.Module, scenario) -> int:
    """MACs of one example (torch-pruning's counter, an estimate) of a plain copy of ``model``."""
    plain = model
    if has_transforms(model):
        plain = clone(model)
        detach_transforms(plain)
    return count_macs(plain, example_inputs(scenario, plain, 1))[0]
