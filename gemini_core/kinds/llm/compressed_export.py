"""Export a weight-quantized causal LM in the compressed-tensors ``pack-quantized`` format: integer
codes packed into int32 words, one scale per output row (or per group of input columns), and a
``quantization_config`` in config.json that transformers' compressed-tensors integration reads.

The engine stores quantized weights dequantized ("fake" quantization, see ``quantize.py``), so the
export first recovers, per group, the scale and integer codes (and, on an asymmetric grid such as
``gptq-asym``'s, the zero point) that reproduce those floats (``llm/grids.py``, shared with the
OpenVINO weights). Packing, the config entry and the decompression are the compressed-tensors
library's own code; zero points are stored in its signed convention (code - 2^(b-1)).
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm.calibrate import linear_layers
from gemini_core.kinds.llm.grids import recover
from gemini_core.techniques.grid import QuantGrid

FORMAT = "pack-quantized"
PACKED_TENSORS = (".weight_packed", ".weight_scale", ".weight_zero_point")  # int32 words and float32 scales


def _grid(bits, group_size, symmetric) -> QuantGrid:
    """The point's grid: a QuantGrid, or bits / group size / symmetric as callers pass them (None: symmetric)."""
    value = bits.bits if isinstance(bits, QuantGrid) else bits
    if value is None or not 2 <= value <= 8:
        raise ConfigError(f"compressed-tensors export packs 2 to 8 bits, not {value}")
    grid = QuantGrid.coerce(bits, group_size, symmetric)
    if grid.granularity == "tensor":
        raise ConfigError("compressed-tensors export packs per-channel or per-group grids, not per-tensor ones")
    return grid


def recover_codes(weight: torch.Tensor, bits, group_size: int | None = None, symmetric: bool | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Signed integer codes (int8, shape of ``weight``), scales (rows x groups, float32) and, on an asymmetric
    grid, zero points (rows x groups, int8, signed like the codes) with ``(codes - zero) * scale`` equal to
    ``weight`` up to float rounding; ``ConfigError`` when ``weight`` is not on such a grid. ``bits``: the
    point's QuantGrid, or bits with ``group_size`` and ``symmetric`` (None: symmetric)."""
    grid = _grid(bits, group_size, symmetric)
    rows, cols = weight.shape
    w = weight.detach().float().numpy()
    if grid.symmetric:
        codes, scale, off = recover(w, grid)
        zero = None
    else:
        codes, scale, zero, off = recover(w, grid)
        shift = 2 ** (grid.bits - 1)  # compressed-tensors keeps signed codes and zero points
        codes, zero = codes.astype(np.int16) - shift, torch.from_numpy(zero[..., 0].astype(np.int16) - shift)
        zero = zero.to(torch.int8)
    if off:
        raise ConfigError(f"{off} weight group(s) are not on {'a symmetric' if grid.symmetric else 'an asymmetric'} "
                          f"{grid.bits}-bit grid of group size {grid.group_size or 'per-channel'}: pass the bits, "
                          "group size and method the point was quantized with (AWQ weights, divided by their "
                          "channel scales, are on no such grid: use the float safetensors export for them)")
    return (torch.from_numpy(codes.astype(np.int8)).reshape(rows, cols), torch.from_numpy(scale[..., 0]).float(),
            zero)


def _quantization_config(grid: QuantGrid, ignore: list[str]):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig, QuantizationScheme

    args = QuantizationArgs(num_bits=grid.bits, type="int", symmetric=grid.symmetric,
                            strategy=grid.granularity, group_size=grid.group_size)
    scheme = QuantizationScheme(targets=["Linear"], weights=args)
    return QuantizationConfig(config_groups={"group_0": scheme}, ignore=ignore, format=FORMAT)


def export_compressed(model, tokenizer, out_dir, bits, group_size: int | None = None,
                      symmetric: bool | None = None) -> dict:
    """Write ``model`` (its decoder Linears fake-quantized on the point's grid: a QuantGrid, or ``bits`` /
    ``group_size`` on a symmetric grid or, ``symmetric=False``, an asymmetric one)
    to ``out_dir`` as compressed-tensors pack-quantized safetensors with its tokenizer. The
    embedding stays float, and so does the output head unless it sits on the same grid (listed under
    ``ignore``). Returns what was written."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import apply_quantization_config

    grid = _grid(bits, group_size, symmetric)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; choose a new folder for the export")
    work = copy.deepcopy(model).float().eval()
    targets = linear_layers(work)
    if not targets:
        raise ConfigError("the model has no decoder Linear layers to pack")
    recovered = {name: recover_codes(lin.weight, grid) for name, lin in targets.items()}
    head = work.get_output_embeddings()
    if head is not None and head.weight is not work.get_input_embeddings().weight:
        try:  # a calibrated head (quantize's head recipes) sits on the grid too: pack it with the blocks
            recovered["lm_head"] = recover_codes(head.weight, grid)
            targets["lm_head"] = head
        except ConfigError:
            pass  # a float head stays float (under ``ignore``)
    packed = {id(lin) for lin in targets.values()}
    ignore = [name for name, module in work.named_modules()
              if isinstance(module, torch.nn.Linear) and id(module) not in packed]
    config = _quantization_config(grid, ignore)
    apply_quantization_config(work, config, show_progress=False)
    for name, lin in targets.items():
        _, scale, zero = recovered[name]
        lin.weight_scale.data = scale.reshape(lin.weight_scale.shape).to(lin.weight_scale.dtype)
        if zero is not None:
            lin.weight_zero_point.data = zero.reshape(lin.weight_zero_point.shape).to(lin.weight_zero_point.dtype)
    compressor = ModelCompressor.from_pretrained_model(work, quantization_format=FORMAT)
    compressor.compress_model(work)
    compressor.remove_decompression_hook(work)
    out.mkdir(parents=True, exist_ok=True)
    work.save_pretrained(out, safe_serialization=True)
    compressor.update_config(str(out))
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    size = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    packed_bytes = 0
    for path in out.glob("*.safetensors"):
        with safe_open(str(path), "pt") as handle:
            packed_bytes += sum(handle.get_slice(k).get_shape()[0] * handle.get_slice(k).get_shape()[1] * 4
                                for k in handle.keys() if k.endswith(PACKED_TENSORS))
    float_bytes = sum(codes.numel() * 4 for codes, _, _ in recovered.values())
    summary = {"format": f"compressed-tensors {FORMAT}", "bits": grid.bits, "group_size": grid.group_size,
               "symmetric": grid.symmetric,
               "packed_layers": len(targets), "float_layers": ignore, "file_bytes": size,
               # the packed Linears (int32 words of codes + float32 scales) against their float32 bytes
               "packed_linear_bytes": packed_bytes, "packed_linear_ratio_vs_fp32": packed_bytes / float_bytes}
    (out / "gemini_compressed.json").write_text(json.dumps(summary, indent=2))
    return summary


def load_compressed(folder):
    """Reload an export with transformers' compressed-tensors integration (decompressed to float on
    the CPU). Safetensors only, never remote code."""
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    with warnings.catch_warnings():  # "the config's quantization_config is used": that is the point
        warnings.filterwarnings("ignore", message=".*already has a `quantization_config`")
        model = AutoModelForCausalLM.from_pretrained(
            folder, trust_remote_code=False, use_safetensors=True,
            quantization_config=CompressedTensorsConfig(run_compressed=False))
    return model.eval()
