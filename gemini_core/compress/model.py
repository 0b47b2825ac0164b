"""``CompressedModel``: what runs, what is stored, and how it was made."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from gemini_core.compress.codec import LAYER_BITS_KEY, encode_state, ideal_size_bytes, to_bytes
from gemini_core.config import CompressionConfig
from gemini_core.techniques.plan import LayerSetting, is_mixed, resolve_layers, tensor_float_bits
from gemini_core.techniques.prune import PruneResult
from gemini_core.techniques.quantize import QuantizedWeight


@dataclass
class CompressedModel:
    """A compressed model: what runs, what is stored, and how it was made."""

    config: CompressionConfig
    model: nn.Module  # the runnable model on its kernels
    stored_model: nn.Module  # fp32 CPU module holding exactly the values that are stored
    quantized: dict[str, QuantizedWeight]
    pruning: PruneResult
    backend: str
    layer_backends: dict[str, str]
    device: torch.device
    sparse_names: set[str] = field(default_factory=set)
    # The per-layer settings compress() resolved once (layer names survive pruning unchanged).
    plan: dict[str, LayerSetting] | None = None

    def __post_init__(self) -> None:
        if self.plan is None:
            self.plan = resolve_layers(self.stored_model, self.config)

    def float_bits(self) -> dict[str, int] | None:
        """Per-layer configs: the float width each unquantized tensor is stored at (None: the config's)."""
        if not is_mixed(self.config):
            return None
        return tensor_float_bits(self.stored_model, self.config, self.plan)

    def layer_bits(self) -> dict[str, int]:
        """Bits of every quantizable layer as stored (32 = float)."""
        out = {}
        for name, setting in self.plan.items():
            q = self.quantized.get(f"{name}.weight")
            float16 = setting.bits == 16 if is_mixed(self.config) else self.config.bits == 16
            out[name] = q.bits if q is not None else (16 if float16 and not setting.skip else 32)
        return out

    def storage(self, metadata: dict | None = None) -> bytes:
        """The bytes of ``model.safetensors`` as the exporter writes them."""
        float_bits = self.float_bits()
        tensors, layout = encode_state(self.stored_model.state_dict(), self.quantized, self.config.bits,
                                       self.sparse_names, float_bits)
        if float_bits is not None:  # per-layer bits travel in the file too (reload checks them)
            metadata = {**(metadata or {}), LAYER_BITS_KEY: self.layer_bits()}
        return to_bytes(tensors, layout, metadata)

    def ideal_size_bytes(self) -> int:
        return ideal_size_bytes(self.stored_model.state_dict(), self.quantized, self.config.bits, self.sparse_names,
                                self.float_bits())
