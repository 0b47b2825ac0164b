"""Quantizing the LM head with calibration: its input is the final norm's output, so its Hessian is
collected on the calibration text with the (already quantized) decoder in front of it, as GPTQ does for
every block. A tied head shares its matrix with the token embedding; it is untied first (the embedding
keeps the float rows), because the embedding's rows are looked up, not multiplied, and rounding them
for the head's sake costs more (SmolLM2 gptq-asym: 14.48 tied against 14.21 untied, last 1,024 tokens).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from gemini_core.kinds.llm.calibrate import InputStats


def head_hessian(model, calib_ids: torch.Tensor) -> torch.Tensor:
    """2 X^T X / n over the head's inputs on ``calib_ids`` (samples x tokens), with the blocks' statistics."""
    head = model.get_output_embeddings()
    stats = InputStats(head.in_features, hessian=True)
    hook = head.register_forward_hook(lambda _module, inputs, _output: stats.add(inputs[0]))
    try:
        with torch.no_grad():
            for sample in calib_ids:
                model(input_ids=sample[None], use_cache=False)
    finally:
        hook.remove()
    return stats.hessian()


def untie_head(model) -> bool:
    """Give the head its own matrix when it shares the embedding's; True when it did."""
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    if head.weight is not embedding.weight:
        return False
    head.weight = nn.Parameter(embedding.weight.detach().clone())
    model.config.tie_word_embeddings = False
    if getattr(model.config, "get_text_config", None) is not None:
        model.config.get_text_config().tie_word_embeddings = False
    return True


def quantize_head(model, calib_ids: torch.Tensor, quantize: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                  ) -> dict:
    """Replace the head's weight by ``quantize(weight, hessian)``; returns what was done."""
    start = time.perf_counter()
    hessian = head_hessian(model, calib_ids)
    untied = untie_head(model)
    head = model.get_output_embeddings()
    with torch.no_grad():
        head.weight.copy_(quantize(head.weight.data, hessian).to(head.weight.dtype))
    return {"untied_from_embedding": untied, "rows": head.out_features,
            "seconds": round(time.perf_counter() - start, 2)}
