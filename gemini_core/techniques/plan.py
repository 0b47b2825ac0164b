"""Per-layer settings: which bits, granularity and pruning ratio each layer of a model gets.

``CompressionConfig.layer_overrides`` holds entries addressed by module-name patterns (see
``config.pattern_regex``); ``resolve_layers`` turns them into one ``LayerSetting`` per
quantizable layer (Linear, Conv2d, Embedding) of a concrete model. A pattern that names no
layer is an error naming the pattern: a typo must not silently compress the whole model.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gemini_core.config import CompressionConfig, LayerOverride, pattern_regex
from gemini_core.errors import ConfigError

LAYER_TYPES = (nn.Linear, nn.Conv2d, nn.Embedding)


@dataclass(frozen=True)
class LayerSetting:
    bits: int
    granularity: str
    skip: bool = False
    prune_ratio: float | None = None  # None: the config's ratio


def layer_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, LAYER_TYPES) and name]


def matching(pattern: str, names: list[str]) -> list[str]:
    regex = pattern_regex(pattern)
    return [n for n in names if regex.match(n)]


def check_patterns(overrides: tuple, names: list[str]) -> dict[str, list[str]]:
    """The layers each pattern names; ConfigError for a pattern that names none."""
    found = {}
    for item in overrides:
        hits = matching(item.pattern, names)
        if not hits:
            sample = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            raise ConfigError(f"layer override {item.pattern!r} matches no layer of this model "
                              f"(layers look like {sample})")
        found[item.pattern] = hits
    return found


def resolve_layers(model: nn.Module, config: CompressionConfig) -> dict[str, LayerSetting]:
    """Every quantizable layer's effective setting under ``config`` (later overrides win, field by field)."""
    names = layer_names(model)
    hits = check_patterns(config.layer_overrides, names)
    settings = {}
    for name in names:
        bits, granularity, skip, ratio = config.bits, config.granularity, False, None
        for item in config.layer_overrides:
            if name not in hits[item.pattern]:
                continue
            if item.skip:
                bits, granularity, skip, ratio = 32, config.granularity, True, 0.0
                continue
            skip = False
            bits = item.bits if item.bits is not None else bits
            granularity = item.granularity if item.granularity is not None else granularity
            ratio = item.prune_ratio if item.prune_ratio is not None else ratio
        settings[name] = LayerSetting(bits, granularity, skip, ratio)
    return settings


def is_mixed(config: CompressionConfig) -> bool:
    """Whether layers may differ in bits or granularity (the per-layer quantization and kernel path)."""
    return bool(config.quant_overrides)


def tensor_float_bits(model: nn.Module, config: CompressionConfig, settings: dict[str, LayerSetting]) -> dict[str, int]:
    """For a mixed config: the float width (16 or 32) each state tensor is stored at.

    A layer's float tensors follow the layer (16 -> bf16, else fp32); tensors of no layer
    (norms, biases of unlisted modules, buffers) follow the config's bits.
    """
    default = 16 if config.bits == 16 else 32
    out = {name: default for name in model.state_dict()}
    for layer, setting in settings.items():
        width = 16 if setting.bits == 16 else 32
        for tensor in ("weight", "bias"):
            key = f"{layer}.{tensor}"
            if key in out:
                out[key] = width
    return out


@torch.no_grad()
def round_to_storage_(model: nn.Module, float_bits: dict[str, int]) -> None:
    """Round the tensors stored as bf16 to bf16 in place, so what runs is exactly what is stored."""
    state = model.state_dict(keep_vars=True)
    for name, width in float_bits.items():
        tensor = state.get(name)
        if width == 16 and tensor is not None and tensor.is_floating_point():
            tensor.data.copy_(tensor.data.to(torch.bfloat16).to(tensor.dtype))


def overrides_from(items) -> tuple[LayerOverride, ...]:
    return tuple(LayerOverride.coerce(item) for item in items)
