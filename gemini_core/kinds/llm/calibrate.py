"""Sequential calibration: run the calibration batch through the decoder one block at a time.

GPTQ, SparseGPT and Wanda all need, for every Linear layer, statistics of *its* inputs. Each
block is compressed using inputs produced by the already-compressed blocks before it (as in
the GPTQ and SparseGPT papers), so errors are corrected for downstream instead of compounding
unseen. Memory stays at one block's activations for the calibration batch.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gemini_core.errors import ConfigError

BlockFn = Callable[[int, dict, dict], None]  # (block index, {name: Linear}, {name: InputStats})


class _Stop(Exception):
    """Raised inside block 0 once its inputs are captured: the rest of the model is not run."""


def decoder_blocks(model) -> nn.ModuleList:
    """The list of transformer blocks (``model.model.layers`` for Llama-like models)."""
    n = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise ConfigError(f"cannot find the {n} decoder blocks of {type(model).__name__}")


def block_linears(block: nn.Module) -> dict[str, nn.Linear]:
    linears = {name: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}
    if not linears:
        raise ConfigError(f"decoder block {type(block).__name__} has no nn.Linear layers to compress")
    return linears


class InputStats:
    """Running X^T X (the layer-wise Hessian, up to a factor 2) and per-column squared norms."""

    def __init__(self, columns: int, hessian: bool):
        self.rows = 0
        self.sq_norm = torch.zeros(columns, dtype=torch.float64)
        # float32 products (as the GPTQ reference): float64 matmuls were 2x slower on this CPU
        self.xtx = torch.zeros(columns, columns, dtype=torch.float32) if hessian else None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()
        self.rows += x.shape[0]
        self.sq_norm += (x * x).sum(0, dtype=torch.float64)
        if self.xtx is not None:
            self.xtx += x.T @ x

    def hessian(self) -> torch.Tensor:
        return (2.0 / max(self.rows, 1)) * self.xtx.double()

    def column_norm(self) -> torch.Tensor:
        return self.sq_norm.sqrt()


def _capture_block0(model, blocks, ids: torch.Tensor) -> tuple[torch.Tensor, dict]:
    store = {}

    def hook(_module, args, kwargs):
        store["hidden"] = args[0] if args else kwargs.pop("hidden_states")
        store["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        raise _Stop

    handle = blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(input_ids=ids, use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    kwargs = store["kwargs"]
    kwargs["use_cache"] = False
    kwargs.pop("past_key_values", None)
    kwargs.pop("past_key_value", None)
    return store["hidden"], kwargs


def _run_block(block, hidden, kwargs):
    out = block(hidden, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def _record(name: str, x: torch.Tensor, stats: dict, seen: dict, hessian: bool) -> None:
    # q/k/v (and gate/up) read one tensor: its statistics are computed once and shared. The
    # tensor is kept in `seen` so its memory cannot be reused by another input with the same address.
    key = (x.data_ptr(), tuple(x.shape))
    if key not in seen:
        seen[key] = (x, InputStats(x.shape[-1], hessian))
        seen[key][1].add(x)
    stats[name] = seen[key][1]


@torch.no_grad()
def compress_sequentially(model, ids: torch.Tensor, fn: BlockFn, hessian: bool,
                          progress: Callable[[int, int], None] | None = None) -> None:
    """For each block: collect input stats of its Linears, call ``fn(index, linears, stats)``,
    then recompute the block's output with the compressed weights for the next block."""
    blocks = decoder_blocks(model)
    hidden, kwargs = _capture_block0(model, blocks, ids)
    for index, block in enumerate(blocks):
        linears = block_linears(block)
        stats: dict[str, InputStats] = {}
        seen: dict = {}
        handles = [lin.register_forward_hook(
                       lambda _m, inp, _o, n=name, st=stats, sn=seen: _record(n, inp[0], st, sn, hessian))
                   for name, lin in linears.items()]
        try:
            _run_block(block, hidden, kwargs)
        finally:
            for handle in handles:
                handle.remove()
        fn(index, linears, stats)
        del stats, seen
        hidden = _run_block(block, hidden, kwargs)
        if progress is not None:
            progress(index + 1, len(blocks))


def linear_layers(model) -> dict[str, nn.Linear]:
    """Every Linear inside the decoder blocks (embeddings and the LM head are left alone)."""
    out = {}
    for index, block in enumerate(decoder_blocks(model)):
        for name, lin in block_linears(block).items():
            out[f"{index}.{name}"] = lin
    return out


def inverse_hessian_chol(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of the damped inverse Hessian (dead inputs get a unit diagonal)."""
    h = h.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    h += damp * torch.mean(torch.diag(h)) * torch.eye(h.shape[0], dtype=h.dtype)
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)


def obs_sweep(weight: torch.Tensor, hessian: torch.Tensor, block: int, damp: float,
              begin_block: Callable[[torch.Tensor, torch.Tensor], Callable[[int], torch.Tensor]]) -> torch.Tensor:
    """The Optimal Brain Surgeon column sweep GPTQ and SparseGPT share (lazy block updates): columns are
    replaced in order by what ``begin_block(w1, hinv1)(i)`` returns (a quantized or masked column of the
    block ``w1``, which is updated in place as earlier columns' errors are spread through the inverse
    Hessian), and each block's error reaches the later blocks at once."""
    cols = weight.shape[1]
    w = weight.double().clone()
    w[:, torch.diag(hessian) == 0] = 0
    hinv = inverse_hessian_chol(hessian.double(), damp)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1, hinv1 = w[:, i1:i2].clone(), hinv[i1:i2, i1:i2]
        err1 = torch.zeros_like(w1)
        column = begin_block(w1, hinv1)
        for i in range(i2 - i1):
            q = column(i)
            err = (w1[:, i] - q) / hinv1[i, i]
            w1[:, i:] -= err.unsqueeze(1) * hinv1[i, i:].unsqueeze(0)
            w1[:, i] = q
            err1[:, i] = err
        w[:, i1:i2] = w1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return w.to(weight.dtype)

