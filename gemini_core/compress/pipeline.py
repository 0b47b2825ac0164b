"""``compress(model, config, scenario)``: prune -> recover -> quantize -> pick kernels, in one call."""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from gemini_core.compress.model import CompressedModel
from gemini_core.config import CompressionConfig
from gemini_core.runtimes import (
    converted,  # noqa: F401  (registers the converted-runtime executions)
    int8_compute,  # noqa: F401  (registers dense-int8)
)
from gemini_core.runtimes.torch_kernels import build_execution_model
from gemini_core.scenarios.base import Scenario
from gemini_core.techniques.plan import LayerSetting, is_mixed, resolve_layers, round_to_storage_, tensor_float_bits
from gemini_core.techniques.prune import PruneResult, prunable_layers, prune
from gemini_core.techniques.qat import qat_recover
from gemini_core.techniques.quantize import quantize_layers_, quantize_weights_


def prune_copy(model: nn.Module, config: CompressionConfig, scenario: Scenario, device=None,
               should_stop=None, plan: dict[str, LayerSetting] | None = None) -> PruneResult:
    """Prune (and fine-tune) a copy of ``model``; the original is left untouched.

    ``config.recovery == "qat"``: prune without recovery, then recover with quantization-aware
    fine-tuning at the config's bits and granularity (pruned zeros stay zero), same steps, rate and seed.
    """
    device = torch.device(device or "cpu")
    if not config.is_qat:
        return prune(copy.deepcopy(model).cpu(), config, scenario, device=device, should_stop=should_stop, plan=plan)
    result = prune(copy.deepcopy(model).cpu(), dataclasses.replace(config, finetune_steps=0), scenario, device=device,
                   plan=plan)
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
    plan = resolve_layers(model, config)  # once: a pattern naming no layer fails before any work
    if pruned is None:
        pruned = prune_copy(model, config, scenario, device=device, plan=plan)
    stored = copy.deepcopy(pruned.model).cpu().eval()
    spec = scenario.prune_spec(stored)
    sparse_names = ({f"{n}.weight" for n, _ in prunable_layers(stored, spec)} if config.is_unstructured else set())
    if is_mixed(config):
        quantized = quantize_layers_(stored, plan)
        round_to_storage_(stored, tensor_float_bits(stored, config, plan))
    else:
        quantized = quantize_weights_(stored, config.bits, config.granularity)
    runnable, backend, layers = build_execution_model(stored, config, quantized, device, plan, scenario)
    return CompressedModel(config, runnable, stored, quantized, pruned, backend, layers, device, sparse_names, plan)
