"""One-shot unstructured and N:M pruning of a causal LM's decoder Linears: magnitude, Wanda, SparseGPT.

Magnitude and Wanda compare weights within each output row (Wanda's comparison group; magnitude
uses the same so the two differ only in the score). SparseGPT picks its mask per 128-column block
from w^2 / [H^-1]_jj^2 and updates the remaining weights to compensate (Frantar & Alistarh 2023).
"""
from __future__ import annotations

import time

import torch

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm.calibrate import compress_sequentially, linear_layers, obs_sweep

METHODS = ("magnitude", "wanda", "sparsegpt")


def parse_pattern(sparsity: float, pattern: str | None) -> tuple[float, int, int]:
    """``pattern`` None/'unstructured' or 'N:M' (N of every M weights pruned) -> (sparsity, n, m)."""
    if pattern in (None, "", "unstructured"):
        if not 0 < sparsity < 1:
            raise ConfigError(f"sparsity must be between 0 and 1, not {sparsity}")
        return sparsity, 0, 0
    try:
        n, m = (int(part) for part in str(pattern).split(":"))
    except ValueError:
        raise ConfigError(f"pattern {pattern!r} is not 'unstructured' or 'N:M' such as '2:4'") from None
    if not 0 < n < m:
        raise ConfigError(f"pattern {pattern!r}: N must be between 1 and M-1")
    return n / m, n, m


def mask_from_scores(score: torch.Tensor, sparsity: float, n: int, m: int) -> torch.Tensor:
    """True where a weight is pruned: the lowest scores of each row, or N of every M columns."""
    rows, cols = score.shape
    mask = torch.zeros_like(score, dtype=torch.bool)
    if n:
        if cols % m:
            raise ConfigError(f"{n}:{m} sparsity needs input columns divisible by {m}, not {cols}")
        groups = score.reshape(rows, cols // m, m)
        idx = torch.topk(groups, n, dim=-1, largest=False).indices
        return mask.reshape(rows, cols // m, m).scatter_(-1, idx, True).reshape(rows, cols)
    k = int(cols * sparsity)
    idx = torch.topk(score, k, dim=1, largest=False).indices
    return mask.scatter_(1, idx, True)


def sparsegpt(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float, n: int = 0, m: int = 0,
              block: int = 128, damp: float = 0.01) -> torch.Tensor:
    def begin_block(w1, hinv1):
        d = torch.diag(hinv1)
        mask1 = torch.zeros_like(w1, dtype=torch.bool)
        if not n:  # adaptive mask: the lowest OBS saliencies of the whole block
            saliency = w1 ** 2 / d.unsqueeze(0) ** 2
            k = int(saliency.numel() * sparsity)
            if k:
                mask1.view(-1)[torch.topk(saliency.view(-1), k, largest=False).indices] = True

        def column(i):
            if n and i % m == 0:  # N:M: the lowest saliencies of each group of m, on the updated weights
                saliency = w1[:, i:i + m] ** 2 / d[i:i + m].unsqueeze(0) ** 2
                mask1.scatter_(1, i + torch.topk(saliency, n, dim=1, largest=False).indices, True)
            return w1[:, i].masked_fill(mask1[:, i], 0)
        return column

    return obs_sweep(weight, hessian, block, damp, begin_block)


def prune_model(model, method: str, sparsity: float = 0.5, pattern: str | None = None,
                calib_ids: torch.Tensor | None = None, progress=None) -> dict:
    """Prune every decoder Linear in place; returns what was done and the sparsity reached."""
    if method not in METHODS:
        raise ConfigError(f"unknown pruning method {method!r}; choose from {', '.join(METHODS)}")
    sparsity, n, m = parse_pattern(sparsity, pattern)
    layers = linear_layers(model)
    start = time.perf_counter()
    if method == "magnitude":
        with torch.no_grad():
            for lin in layers.values():
                lin.weight.masked_fill_(mask_from_scores(lin.weight.abs(), sparsity, n, m), 0)
    else:
        if calib_ids is None:
            raise ConfigError(f"{method} needs calibration text")

        def per_block(_index, linears, stats):
            for name, lin in linears.items():
                if method == "wanda":  # |W_ij| * ||X_j||_2 (Sun et al. 2023)
                    score = lin.weight.abs() * stats[name].column_norm().to(lin.weight.dtype)
                    lin.weight.masked_fill_(mask_from_scores(score, sparsity, n, m), 0)
                else:
                    lin.weight.copy_(sparsegpt(lin.weight, stats[name].hessian(), sparsity, n, m))

        compress_sequentially(model, calib_ids, per_block, hessian=method == "sparsegpt",
                              progress=progress)
    zeros = sum(int((lin.weight == 0).sum()) for lin in layers.values())
    total = sum(lin.weight.numel() for lin in layers.values())
    return {"technique": "prune", "method": method, "pattern": f"{n}:{m}" if n else "unstructured",
            "target_sparsity": sparsity, "sparsity": round(zeros / total, 4), "layers": len(layers),
            "calibration_tokens": int(calib_ids.numel()) if calib_ids is not None and method != "magnitude" else 0,
            "seconds": round(time.perf_counter() - start, 2)}
