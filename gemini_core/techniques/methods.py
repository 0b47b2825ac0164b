"""The pruning-method registry: one entry per method, read by the config, the CLI and the pages.

An entry says what kind of pruning the method is and carries its scoring:
- ``structured``: a torch-pruning importance (the dependency graph removes whole channels / heads);
- ``unstructured`` / ``n:m``: a mask function ``(weight, ratio) -> keep-mask`` applied per layer.
Adding a method is one ``register_prune_method(PruneMethod(...))`` call; nothing else names it.
This module imports nothing else of the project's, so the config can validate names against it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch_pruning as tp
from torch.nn.utils import prune as torch_prune

KINDS = ("none", "structured", "unstructured", "n:m")


@dataclass(frozen=True)
class PruneMethod:
    name: str
    kind: str
    help: str
    importance: Callable[[], object] | None = None  # structured: a fresh torch-pruning importance
    needs_gradients: bool = False  # the importance reads .grad (a loss is back-propagated first)
    mask: Callable[[torch.Tensor, float], torch.Tensor] | None = None  # masks: weight, ratio -> keep
    fixed_ratio: float | None = None  # N:M patterns fix the share of zeros


PRUNE_METHODS: dict[str, PruneMethod] = {}


def register_prune_method(method: PruneMethod) -> PruneMethod:
    if method.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    PRUNE_METHODS[method.name] = method
    return method


def methods_of_kind(*kinds: str) -> tuple[str, ...]:
    return tuple(name for name, m in PRUNE_METHODS.items() if m.kind in kinds)


def magnitude_mask(weight: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep all but the ``ratio`` share of smallest-magnitude weights (torch's L1Unstructured)."""
    return torch_prune.L1Unstructured(amount=ratio).compute_mask(weight.detach(), torch.ones_like(weight))


def nm_mask(weight: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Keep the ``n`` largest of every ``m`` consecutive weights along the input dimension."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    if flat.shape[1] % m:
        raise ValueError(f"input size {flat.shape[1]} is not a multiple of {m}")
    groups = flat.abs().reshape(flat.shape[0], -1, m)
    keep = groups.topk(n, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(weight.shape)


for _method in (
    PruneMethod("none", "none", "no pruning"),
    PruneMethod("l1-structured", "structured", "remove channels / heads with the smallest L1 norm (coupled groups)",
                importance=lambda: tp.importance.GroupMagnitudeImportance(p=1)),
    PruneMethod("l2-structured", "structured", "remove channels / heads with the smallest L2 norm (coupled groups)",
                importance=lambda: tp.importance.GroupMagnitudeImportance(p=2)),
    PruneMethod("taylor-structured", "structured", "remove channels whose first-order loss change is smallest",
                importance=lambda: tp.importance.GroupTaylorImportance(), needs_gradients=True),
    PruneMethod("random-structured", "structured", "remove random channels (a control for the others)",
                importance=lambda: tp.importance.RandomImportance()),
    PruneMethod("magnitude-unstructured", "unstructured", "zero the smallest-magnitude weights of each layer",
                mask=magnitude_mask),
    PruneMethod("2:4", "n:m", "keep the 2 largest of every 4 consecutive weights (50%)",
                mask=lambda weight, ratio: nm_mask(weight, 2, 4), fixed_ratio=0.5),
):
    register_prune_method(_method)
