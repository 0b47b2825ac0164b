"""``compress(model, config, scenario)``: prune -> recover -> quantize -> pick kernels, in one call."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import CompressionConfig
from .kernels import build_execution_model
from .prune import PruneResult, prune, prunable_layers
from .quantize import QuantizedWeight, quantize_weights_
from .scenarios.base import Scenario
from .serialize import encode_state, ideal_size_bytes, to_bytes


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

    def storage(self, metadata: dict | None = None) -> bytes:
        """The bytes of ``model.safetensors`` as the exporter writes them."""
        tensors, layout = encode_state(self.stored_model.state_dict(), self.quantized, self.config.bits,
                                       self.sparse_names)
        return to_bytes(tensors, layout, metadata)

    def ideal_size_bytes(self) -> int:
        return ideal_size_bytes(self.stored_model.state_dict(), self.quantized, self.config.bits, self.sparse_names)


def prune_copy(model: nn.Module, config: CompressionConfig, scenario: Scenario, device=None) -> PruneResult:
    """Prune (and fine-tune) a copy of ``model``; the original is left untouched.

    ``config.recovery == "qat"``: prune without recovery, then recover with quantization-aware
    fine-tuning at the config's bits and granularity (pruned zeros stay zero), same steps, rate and seed.
    """
    device = torch.device(device or "cpu")
    if not config.is_qat:
        return prune(copy.deepcopy(model).cpu(), config, scenario, device=device)
    from .qat import qat_recover

    result = prune(copy.deepcopy(model).cpu(), dataclasses.replace(config, finetune_steps=0), scenario, device=device)
    settings = scenario.default_train
    result.finetune_loss = qat_recover(result.model, scenario, config.bits, config.granularity,
                                       config.finetune_steps, lr=settings.lr * 0.3, batch_size=settings.batch_size,
                                       keep_zeros=config.is_unstructured, seed=0, device=device)
    return result


def compress(model: nn.Module, config: CompressionConfig, scenario: Scenario, device=None,
             pruned: PruneResult | None = None) -> CompressedModel:
    """Apply ``config`` to a copy of ``model``. Pass ``pruned`` to reuse one pruning across bit widths."""
    device = torch.device(device or "cpu")
    if pruned is None:
        pruned = prune_copy(model, config, scenario, device=device)
    stored = copy.deepcopy(pruned.model).cpu().eval()
    spec = scenario.prune_spec(stored)
    sparse_names = ({f"{n}.weight" for n, _ in prunable_layers(stored, spec)} if config.is_unstructured else set())
    quantized = quantize_weights_(stored, config.bits, config.granularity)
    runnable, backend, layers = build_execution_model(stored, config, quantized, device)
    return CompressedModel(config, runnable, stored, quantized, pruned, backend, layers, device, sparse_names)
