"""Weight-only quantization of a causal LM's decoder Linears: round-to-nearest, GPTQ and AWQ.

Weights are quantized and stored back dequantized ("fake" quantization): the figures measure
what the integer grid does to the model; the GGUF / safetensors export stores the result.
Grid: symmetric uses codes -2^(b-1) .. 2^(b-1)-1 with scale = max|w| / (2^b - 1) * 2 (the
compressed-tensors convention); asymmetric uses 0 .. 2^b-1 with a zero point.
"""
from __future__ import annotations

import numbers
import time
from dataclasses import dataclass

import torch

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm.calibrate import compress_sequentially, linear_layers, obs_sweep
from gemini_core.kinds.llm.head import quantize_head
from gemini_core.techniques.grid import QuantGrid


@dataclass(frozen=True)
class QuantMethod:
    """A weight quantization method a point names: an algorithm and the options of its grid."""

    algorithm: str  # "rtn", "gptq" or "awq"
    symmetric: bool = True
    act_order: bool = False  # GPTQ only
    clip: bool = False  # RTN and GPTQ
    head: bool = False  # GPTQ only: the LM head too (head.py), on the same grid
    help: str = ""


# The methods a point, a sweep (--quant-methods) and the dashboard choose from; a new recipe is one entry.
RECIPES = {
    "rtn": QuantMethod("rtn", help="round-to-nearest, symmetric"),
    "gptq": QuantMethod("gptq", help="GPTQ, symmetric"),
    "awq": QuantMethod("awq", help="AWQ scale search, then round-to-nearest, symmetric"),
    # the 4-bit g64 recipe within 15% of float perplexity on SmolLM2 (docs/llm.md)
    "gptq-asym": QuantMethod("gptq", symmetric=False, act_order=True, clip=True,
                             help="GPTQ with zero points (asymmetric grid), activation order and range clipping"),
    # the fast recipe: a symmetric grid GGUF's q4_0 blocks hold, and the LM head (a fifth of SmolLM2's
    # weights) calibrated too, which 4-bit rounding alone cannot afford (docs/llm.md)
    "gptq-sym-head": QuantMethod("gptq", act_order=True, clip=True, head=True,
                                 help="GPTQ, symmetric, with activation order and range clipping; the LM head "
                                      "quantized too (GPTQ on the final hidden states; untied from the embedding)"),
}
METHODS = tuple(RECIPES)


_NOT_PER_TENSOR = "LLM weights are quantized per channel or in groups of input columns, not per tensor"


def group_size_of(value) -> int | None:
    """An LLM group size from any spelling QuantGrid reads ("64", "g64", "group-64", 64; "per-channel", "none",
    "" and None: per channel); ConfigError for per-tensor, which the LLM quantizers and formats do not store."""
    granularity, size = QuantGrid.parse_granularity(value)
    if granularity == "tensor":
        raise ConfigError(f"{value!r}: {_NOT_PER_TENSOR}")
    return size


def llm_grid(bits, group_size=None, symmetric: bool | None = None) -> QuantGrid:
    """The grid an LLM quantizer works on: ``bits`` with ``group_size`` (any spelling QuantGrid reads; None: per
    channel) and ``symmetric`` (None: symmetric), or a QuantGrid as it is; 2 to 8 bits, never per tensor."""
    value = bits.bits if isinstance(bits, QuantGrid) else bits
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 2 <= value <= 8:
        raise ConfigError(f"bits must be between 2 and 8, not {value}")
    if isinstance(bits, QuantGrid):
        grid = QuantGrid.coerce(bits, group_size, symmetric)
    else:
        grid = QuantGrid.parse(bits, group_size, True if symmetric is None else symmetric)
    if grid.granularity == "tensor":
        raise ConfigError(_NOT_PER_TENSOR)
    return grid


def check_grid(bits, group_size, columns: int) -> QuantGrid:
    """``llm_grid(bits, group_size)``, checked against a Linear's ``columns`` (its group size must divide them)."""
    return llm_grid(bits, group_size).check_columns(columns)


def grid_params(w: torch.Tensor, bits: int, symmetric: bool, clip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point per row of ``w`` (rows x columns-in-the-group). ``clip``: shrink each row's
    range (to 100%, 95%, ... 50% of it) where that lowers the row's rounding error sum |dw|^2.4 (the
    GPTQ reference's ``mse`` grid search), trading the extremes' error for finer steps."""
    maxq = 2 ** bits - 1
    if symmetric:
        scale = w.abs().amax(dim=-1, keepdim=True) * 2 / maxq
        zero = torch.full_like(scale, (maxq + 1) / 2)
    else:
        lo = w.amin(dim=-1, keepdim=True).clamp(max=0)
        hi = w.amax(dim=-1, keepdim=True).clamp(min=0)
        scale = (hi - lo) / maxq
        zero = torch.round(-lo / scale.clamp(min=1e-12))
    scale = scale.clamp(min=1e-12)
    if not clip:
        return scale, zero
    best_err = ((fake_quant(w, scale, zero, bits) - w).abs() ** 2.4).sum(-1, keepdim=True)
    for step in range(1, 11):
        shrink = 1 - step / 20
        if symmetric:
            s2, z2 = scale * shrink, zero
        else:
            s2 = ((hi - lo) * shrink / maxq).clamp(min=1e-12)
            z2 = torch.round(-lo * shrink / s2)
        err = ((fake_quant(w, s2, z2, bits) - w).abs() ** 2.4).sum(-1, keepdim=True)
        better = err < best_err
        scale, zero = torch.where(better, s2, scale), torch.where(better, z2, zero)
        best_err = torch.where(better, err, best_err)
    return scale, zero


def fake_quant(w, scale, zero, bits: int) -> torch.Tensor:
    q = torch.clamp(torch.round(w / scale) + zero, 0, 2 ** bits - 1)
    return scale * (q - zero)


def rtn(weight: torch.Tensor, bits, group_size: int | None = None, symmetric: bool | None = None,
        clip: bool = False) -> torch.Tensor:
    """Round-to-nearest, per output row or per group of ``group_size`` input columns; ``bits`` may be a
    QuantGrid (then it gives the group size and symmetry; ``symmetric`` None: symmetric, or the grid's own)."""
    rows, cols = weight.shape
    grid = llm_grid(bits, group_size, symmetric).check_columns(cols)
    w = weight.float().reshape(rows, -1, grid.group_size or cols)
    scale, zero = grid_params(w, grid.bits, grid.symmetric, clip)
    return fake_quant(w, scale, zero, grid.bits).reshape(rows, cols).to(weight.dtype)


def gptq(weight: torch.Tensor, hessian: torch.Tensor, bits, group_size: int | None = None,
         symmetric: bool | None = None, damp: float = 0.01, act_order: bool = False,
         clip: bool = False) -> torch.Tensor:
    """GPTQ (Frantar et al. 2022): quantize columns in order, spreading each column's rounding
    error over the not-yet-quantized columns through the inverse Hessian (lazy block updates).

    ``act_order``: columns are swept by decreasing Hessian diagonal (the inputs with the most energy
    first, while the most columns remain to absorb their error); each group's scale is then fixed
    from the weights before the sweep ("static groups"), so groups stay runs of consecutive input
    columns, the layout every runtime stores. ``clip``: each group's range is searched (grid_params).
    ``bits`` may be a QuantGrid, as for ``rtn``."""
    grid = llm_grid(bits, group_size, symmetric).check_columns(weight.shape[1])
    bits, group_size, symmetric = grid.bits, grid.group_size, grid.symmetric
    block = group_size * max(1, 128 // group_size) if group_size else 128
    cols = weight.shape[1]
    group = group_size or cols
    start = weight.double().clone()
    start[:, torch.diag(hessian) == 0] = 0
    perm = torch.argsort(torch.diag(hessian), descending=True) if act_order else None
    static = None
    if act_order or group_size is None:  # scales from the weights as the sweep starts (dead inputs zeroed)
        static = [grid_params(start[:, g:g + group], bits, symmetric, clip) for g in range(0, cols, group)]
    if perm is not None:
        weight, hessian = weight[:, perm], hessian[perm][:, perm]
    offset = [0]

    def begin_block(w1, _hinv1):
        grid = {"scale_zero": None}
        first = offset[0]
        offset[0] += w1.shape[1]

        def column(i):
            if static is not None:
                original = int(perm[first + i]) if perm is not None else first + i
                scale, zero = static[original // group]
            else:
                if i % group == 0:  # groups start inside the block: use updated w1
                    grid["scale_zero"] = grid_params(w1[:, i:i + group], bits, symmetric, clip)
                scale, zero = grid["scale_zero"]
            return fake_quant(w1[:, i:i + 1], scale, zero, bits)[:, 0]
        return column

    out = obs_sweep(weight, hessian, block, damp, begin_block)
    if perm is not None:
        out = out[:, torch.argsort(perm)]
    return out


def _awq_group(linears: list, h: torch.Tensor, act_rms: torch.Tensor, qgrid: QuantGrid, grid: int = 20) -> None:
    """AWQ (Lin et al. 2023): scale input channel j by s_j = rms(x_j)^alpha before rounding
    (W' = Q(W s) / s), alpha chosen to minimise the output error sum_rows dW H dW^T on the
    calibration inputs. Linears sharing one input share one scale, so it can fold into the
    previous operation (norm weight or preceding Linear) in a real integer deployment."""
    h = h.float()
    originals = [lin.weight.data.float().clone() for lin in linears]
    best, best_loss = None, float("inf")
    for step in range(grid):
        s = act_rms.float().clamp(min=1e-5) ** (step / grid)
        s = s / (s.max() * s.min()).sqrt()
        loss, candidate = 0.0, []
        for w in originals:
            wq = rtn(w * s, qgrid) / s
            dw = wq - w
            loss += float(((dw @ h) * dw).sum())
            candidate.append(wq)
        if loss < best_loss:
            best, best_loss = candidate, loss
    for lin, wq in zip(linears, best):
        lin.weight.data.copy_(wq.to(lin.weight.dtype))


def _shared_input_groups(stats: dict) -> list[list[str]]:
    # Linears fed by the same tensor (q/k/v, gate/up) collected identical statistics.
    groups: list[list[str]] = []
    for name, st in stats.items():
        for group in groups:
            if torch.equal(stats[group[0]].sq_norm, st.sq_norm):
                group.append(name)
                break
        else:
            groups.append([name])
    return groups


def quantize_model(model, method: str, bits: int, group_size: int | None = None,
                   symmetric: bool | None = None, calib_ids: torch.Tensor | None = None,
                   progress=None, act_order: bool | None = None, clip: bool | None = None) -> dict:
    """Quantize every decoder Linear in place with the registered ``method`` (``RECIPES``); returns what
    was done (for the record). ``symmetric``, ``act_order`` (GPTQ only) and ``clip`` (GPTQ and RTN; see
    ``gptq`` and ``grid_params``) override the method's own when given."""
    if method not in RECIPES:
        raise ConfigError(f"unknown quantization method {method!r}; choose from {', '.join(METHODS)}")
    recipe = RECIPES[method]
    symmetric = recipe.symmetric if symmetric is None else symmetric
    act_order = recipe.act_order if act_order is None else act_order
    clip = recipe.clip if clip is None else clip
    name, method = method, recipe.algorithm
    if act_order and method != "gptq":
        raise ConfigError(f"activation order is a GPTQ option; {method} has no column order")
    if clip and method == "awq":
        raise ConfigError("range clipping is not implemented for AWQ (its scale search sets the grid)")
    grid = llm_grid(bits, group_size, symmetric)
    layers = linear_layers(model)
    for lin in layers.values():
        grid.check_columns(lin.in_features)
    start = time.perf_counter()
    if method == "rtn":
        with torch.no_grad():
            for lin in layers.values():
                lin.weight.copy_(rtn(lin.weight, grid, clip=clip))
    else:
        if calib_ids is None:
            raise ConfigError(f"{method} needs calibration text")

        def per_block(_index, linears, stats):
            if method == "gptq":
                for name, lin in linears.items():
                    lin.weight.copy_(gptq(lin.weight, stats[name].hessian(), grid, act_order=act_order, clip=clip))
                return
            for group in _shared_input_groups(stats):
                st = stats[group[0]]
                rms = (st.sq_norm / max(st.rows, 1)).sqrt()
                _awq_group([linears[n] for n in group], st.hessian(), rms, grid)

        compress_sequentially(model, calib_ids, per_block, hessian=True, progress=progress)
    head = None
    if recipe.head:
        head = quantize_head(model, calib_ids, lambda w, h: gptq(w, h, grid, act_order=act_order, clip=clip))
    return {"technique": "quantize", "method": name, "algorithm": method, "bits": grid.bits,
            "group_size": grid.group_size, "symmetric": grid.symmetric, "act_order": act_order, "clip": clip,
            "layers": len(layers), "head": head,
            "calibration_tokens": int(calib_ids.numel()) if calib_ids is not None and method != "rtn" else 0,
            "seconds": round(time.perf_counter() - start, 2)}
