"""``compress(model, config, scenario)``: prune -> recover -> quantize -> pick kernels, in one call."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from gemini_core.config import CompressionConfig
from gemini_core.runtimes.torch_kernels import build_execution_model
from gemini_core.techniques.plan import is_mixed, resolve_layers, round_to_storage_, tensor_float_bits
from gemini_core.techniques.prune import PruneResult, prune, prunable_layers
from gemini_core.techniques.quantize import QuantizedWeight, quantize_layers_, quantize_weights_
from gemini_core.scenarios.base import Scenario
from gemini_core.checkpoint.codec import LAYER_BITS_KEY, encode_state, ideal_size_bytes, to_bytes


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

    def float_bits(self) -> dict[str, int] | None:
        """Per-layer configs: the float width each unquantized tensor is stored at (None: the config's)."""
        if not is_mixed(self.config):
            return None
        return tensor_float_bits(self.stored_model, self.config, resolve_layers(self.stored_model, self.config))

    def layer_bits(self) -> dict[str, int]:
        """Bits of every quantizable layer as stored (32 = float)."""
        settings = resolve_layers(self.stored_model, self.config)
        out = {}
        for name, setting in settings.items():
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


def prune_copy(model: nn.Module, config: CompressionConfig, scenario: Scenario, device=None,
               should_stop=None) -> PruneResult:
    """Prune (and fine-tune) a copy of ``model``; the original is left untouched.

    ``config.recovery == "qat"``: prune without recovery, then recover with quantization-aware
    fine-tuning at the config's bits and granularity (pruned zeros stay zero), same steps, rate and seed.
    """
    device = torch.device(device or "cpu")
    if not config.is_qat:
        return prune(copy.deepcopy(model).cpu(), config, scenario, device=device, should_stop=should_stop)
    from gemini_core.techniques.qat import qat_recover

    result = prune(copy.deepcopy(model).cpu(), dataclasses.replace(config, finetune_steps=0), scenario, device=device)
    settings = scenario.default_train
    result.finetune_loss = qat_recover(result.model, scenario, config.bits, config.granularity,
                                       config.finetune_steps, lr=settings.lr * 0.3, batch_size=settings.batch_size,
                                       keep_zeros=config.is_unstructured, seed=0, device=device,
                                       should_stop=should_stop)
    return result


def compress(model: nn.Module, config: CompressionConfig, scenario: Scenario, device=None,
             pruned: PruneResult | None = None) -> CompressedModel:
    """Apply ``config`` to a copy of ``model``. Pass ``pruned`` to reuse one pruning across bit widths."""
    device = torch.device(device or "cpu")
    if config.layer_overrides:
        resolve_layers(model, config)  # a pattern naming no layer fails before any work
    if pruned is None:
        pruned = prune_copy(model, config, scenario, device=device)
    stored = copy.deepcopy(pruned.model).cpu().eval()
    spec = scenario.prune_spec(stored)
    sparse_names = ({f"{n}.weight" for n, _ in prunable_layers(stored, spec)} if config.is_unstructured else set())
    if is_mixed(config):
        settings = resolve_layers(stored, config)
        quantized = quantize_layers_(stored, settings)
        round_to_storage_(stored, tensor_float_bits(stored, config, settings))
    else:
        quantized = quantize_weights_(stored, config.bits, config.granularity)
    runnable, backend, layers = build_execution_model(stored, config, quantized, device)
    return CompressedModel(config, runnable, stored, quantized, pruned, backend, layers, device, sparse_names)
