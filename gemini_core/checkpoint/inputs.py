"""The model's inputs as the recipe records them, and neutral inputs of those shapes."""
from __future__ import annotations

import torch

from gemini_core.scenarios.registry import inputs_from_arch


def input_spec(scenario) -> dict:
    """Name -> per-example shape and dtype of the model's inputs (from one test example)."""
    example = scenario.example_inputs(1)
    return {name: {"shape": list(t.shape[1:]), "dtype": str(t.dtype).replace("torch.", "")}
            for name, t in example.items()}


def synthetic_inputs(recipe: dict, batch_size: int = 1) -> dict[str, torch.Tensor]:
    """Inputs of the right shapes with neutral values (zeros; ones for attention masks)."""
    spec = recipe.get("inputs") or inputs_from_arch(recipe["scenario"]["arch"])
    out = {}
    for name, item in spec.items():
        dtype = getattr(torch, item["dtype"])
        shape = (batch_size, *item["shape"])
        out[name] = torch.ones(shape, dtype=dtype) if "mask" in name else torch.zeros(shape, dtype=dtype)
    return out
