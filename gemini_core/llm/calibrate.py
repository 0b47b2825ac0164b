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
