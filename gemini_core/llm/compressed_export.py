"""Export a weight-quantized causal LM in the compressed-tensors ``pack-quantized`` format: integer
codes packed into int32 words, one scale per output row (or per group of input columns), and a
``quantization_config`` in config.json that transformers' compressed-tensors integration reads.

The engine stores quantized weights dequantized ("fake" quantization, see ``quantize.py``), so the
export first recovers, per group, a scale and integer codes that reproduce those floats: with the
symmetric grid, every value of a group is ``scale * k`` with ``k`` in ``-2^(b-1) .. 2^(b-1)-1``; the
largest |value| is ``scale * m`` for some ``m <= 2^(b-1)``, so trying each ``m`` and keeping the first
for which every value lands on an integer finds a scale that rebuilds the group (to float rounding).
Packing, the config entry and the decompression are the compressed-tensors library's own code.
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch
from safetensors import safe_open

from gemini_core.errors import ConfigError
from gemini_core.llm.calibrate import linear_layers

FORMAT = "pack-quantized"
# A value counts as on the grid when value / scale is this close to an integer (float32 rounding of
# scale * k, and of GPTQ's float64 arithmetic cast to float32, stays far below it; a grid of at most
# 256 codes puts the nearest wrong candidate at least 1/256 away).
GRID_TOLERANCE = 1e-3


def recover_codes(weight: torch.Tensor, bits: int, group_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes (int8, shape of ``weight``) and scales (rows x groups, float32) with
    ``codes * scale`` equal to ``weight`` up to float rounding; ``ConfigError`` when ``weight`` is
    not on a symmetric ``bits``-bit grid with that group size."""
    rows, cols = weight.shape
    group = group_size or cols
    if cols % group:
        raise ConfigError(f"group size {group} does not divide the {cols} input columns")
    w = weight.detach().double().reshape(rows, cols // group, group)
    peak = w.abs().amax(dim=-1, keepdim=True)
    half = 2 ** (bits - 1)
    scale = torch.zeros_like(peak)
    found = peak == 0  # an all-zero group: any scale; keep 1 so nothing divides by zero
    scale[found] = 1.0
    for m in range(1, half + 1):
        candidate = peak / m
        ratio = w / candidate.clamp(min=1e-300)
        fits = ((ratio - ratio.round()).abs() <= GRID_TOLERANCE).all(dim=-1, keepdim=True)
        codes = ratio.round()
        fits &= (codes >= -half).all(dim=-1, keepdim=True) & (codes <= half - 1).all(dim=-1, keepdim=True)
        take = fits & ~found
        scale[take] = candidate[take]
        found |= take
        if bool(found.all()):
            break
    if not bool(found.all()):
        bad = int((~found).sum())
        raise ConfigError(f"{bad} weight group(s) are not on a symmetric {bits}-bit grid of group size "
                          f"{group_size or 'per-channel'}: pass the bits and group size the point was "
                          "quantized at (AWQ weights, divided by their channel scales, are on no such grid: "
                          "use the float safetensors export for them)")
    codes = (w / scale).round().to(torch.int8).reshape(rows, cols)
    return codes, scale.squeeze(-1).float()


def _quantization_config(bits: int, group_size: int | None, ignore: list[str]):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig, QuantizationScheme

    args = QuantizationArgs(num_bits=bits, type="int", symmetric=True,
                            strategy="group" if group_size else "channel", group_size=group_size)
    scheme = QuantizationScheme(targets=["Linear"], weights=args)
    return QuantizationConfig(config_groups={"group_0": scheme}, ignore=ignore, format=FORMAT)


def export_compressed(model, tokenizer, out_dir, bits: int, group_size: int | None) -> dict:
    """Write ``model`` (its decoder Linears fake-quantized at ``bits`` / ``group_size``, symmetric)
    to ``out_dir`` as compressed-tensors pack-quantized safetensors with its tokenizer. The
    embedding and output head stay float (listed under ``ignore``). Returns what was written."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import apply_quantization_config

    if not 2 <= bits <= 8:
        raise ConfigError(f"compressed-tensors export packs 2 to 8 bits, not {bits}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; choose a new folder for the export")
    work = copy.deepcopy(model).float().eval()
    targets = linear_layers(work)
    if not targets:
        raise ConfigError("the model has no decoder Linear layers to pack")
    recovered = {name: recover_codes(lin.weight, bits, group_size) for name, lin in targets.items()}
    packed = {id(lin) for lin in targets.values()}
    ignore = [name for name, module in work.named_modules()
              if isinstance(module, torch.nn.Linear) and id(module) not in packed]
    config = _quantization_config(bits, group_size, ignore)
    apply_quantization_config(work, config, show_progress=False)
    for name, lin in targets.items():
        scale = recovered[name][1]
        lin.weight_scale.data = scale.reshape(lin.weight_scale.shape).to(lin.weight_scale.dtype)
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
            packed_bytes += sum(handle.get_slice(k).get_shape()[0] * handle.get_slice(k).get_shape()[1]
                                * 4 for k in handle.keys() if k.endswith((".weight_packed", ".weight_scale")))
    float_bytes = sum(codes.numel() * 4 for codes, _ in recovered.values())
    summary = {"format": f"compressed-tensors {FORMAT}", "bits": bits, "group_size": group_size,
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
