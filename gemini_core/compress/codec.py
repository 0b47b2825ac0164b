"""How a compressed model is stored: safetensors tensors plus a JSON layout in the file's metadata.

- codes below 8 bits are bit-packed into uint8 (ceil(n * bits / 8) bytes), 8-bit codes are int8;
- scales are fp16, zero-points uint8, one per group;
- a weight with zeros is stored sparse (a 1-bit presence mask plus the codes of nonzeros only)
  whenever that is smaller than dense;
- 16-bit points store floating tensors as bf16, 32-bit points as fp32.

``encode_state`` is used both to size a point during a sweep and to write an export, so the
``size_bytes`` a sweep reports is the size of the file the exporter writes.
"""
from __future__ import annotations

import json

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from gemini_core.techniques.grid import QuantGrid
from gemini_core.techniques.quantize import QuantizedWeight, dequantize

LAYOUT_KEY = "gemini_layout"
LAYER_BITS_KEY = "gemini_layer_bits"  # per-layer configs: {layer name: bits (32 = float)}


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned codes (< 2**bits) into a uint8 stream, ``bits`` bits each, big-endian."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1)
    if bits == 8:
        return codes.copy()
    as_bits = np.unpackbits(codes[:, None], axis=1)[:, 8 - bits:]
    return np.packbits(as_bits.reshape(-1))


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    packed = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
    if bits == 8:
        return packed[:count].copy()
    as_bits = np.unpackbits(packed)[: count * bits].reshape(count, bits)
    padded = np.zeros((count, 8), dtype=np.uint8)
    padded[:, 8 - bits:] = as_bits
    return np.packbits(padded, axis=1).reshape(-1)


def _element_codes(q: QuantizedWeight) -> np.ndarray:
    """Codes in the weight's own element order (group padding dropped)."""
    rows = q.rows
    codes = q.codes.reshape(rows, -1)[:, : q.numel // rows]
    return codes.reshape(-1).numpy()


def _group_of_elements(q: QuantizedWeight) -> np.ndarray:
    """Index of the group each element belongs to (element order)."""
    rows = q.rows
    group_len = q.codes.shape[1]
    padded_cols = q.codes.numel() // rows
    cols = q.numel // rows
    grid = np.arange(rows * padded_cols).reshape(rows, padded_cols)[:, :cols] // group_len
    return grid.reshape(-1)


def _encode_quantized(name: str, q: QuantizedWeight, nonzero: np.ndarray | None) -> tuple[dict, dict]:
    codes = _element_codes(q)
    tensors = {f"{name}::scale": q.scale.contiguous()}
    layout = {"kind": "quantized", "bits": q.bits, "shape": list(q.shape), "granularity": q.granularity,
              "group_len": int(q.codes.shape[1]), "groups": int(q.codes.shape[0])}
    if q.zero_point is not None:
        tensors[f"{name}::zero"] = q.zero_point.contiguous()
    stored = codes
    dense_bytes = -(-codes.size * q.bits // 8)
    if nonzero is not None:
        kept = int(nonzero.sum())
        sparse_bytes = -(-codes.size // 8) + -(-kept * q.bits // 8)
        if sparse_bytes < dense_bytes:
            tensors[f"{name}::mask"] = torch.from_numpy(np.packbits(nonzero))
            stored = codes[nonzero]
            layout["sparse"] = True
    if q.bits == 8:
        tensors[f"{name}::codes"] = torch.from_numpy(stored.astype(np.int8))
    else:
        tensors[f"{name}::codes"] = torch.from_numpy(pack_bits(stored.astype(np.uint8), q.bits))
    return tensors, layout


def _encode_float(name: str, tensor: torch.Tensor, dtype: torch.dtype) -> tuple[dict, dict]:
    tensor = tensor.detach().to(dtype) if tensor.is_floating_point() else tensor.detach()
    flat = tensor.reshape(-1)
    layout = {"kind": "float", "shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", "")}
    if tensor.is_floating_point() and tensor.dim() >= 2:
        nonzero = (flat != 0).numpy()
        itemsize = tensor.element_size()
        if -(-flat.numel() // 8) + int(nonzero.sum()) * itemsize < flat.numel() * itemsize:
            layout["sparse"] = True
            return {f"{name}::mask": torch.from_numpy(np.packbits(nonzero)),
                    f"{name}::values": flat[torch.from_numpy(nonzero)].contiguous()}, layout
    return {name: tensor.contiguous()}, layout


def encode_state(state: dict[str, torch.Tensor], quantized: dict[str, QuantizedWeight], bits: int,
                 sparse_names: set[str] | None = None, float_bits: dict[str, int] | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors to write and their layout. ``sparse_names``: weights that may hold pruned zeros.

    ``float_bits`` (per-layer configs): the float width, 16 or 32, of each tensor not quantized;
    bits per quantized tensor are in its codes. Both are written per tensor, so a mixed model
    round-trips layer by layer.
    """
    sparse_names = sparse_names or set()
    float_bits = float_bits or {}
    tensors, layout = {}, {}
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        float_dtype = torch.bfloat16 if float_bits.get(name, bits) == 16 else torch.float32
        if name in quantized:
            nonzero = (tensor.reshape(-1) != 0).numpy() if name in sparse_names else None
            t, lay = _encode_quantized(name, quantized[name], nonzero)
        elif name in sparse_names:
            t, lay = _encode_float(name, tensor, float_dtype)
        else:
            t = {name: (tensor.to(float_dtype) if tensor.is_floating_point() else tensor).contiguous()}
            lay = {"kind": "float", "shape": list(tensor.shape), "dtype": str(t[name].dtype).replace("torch.", "")}
        tensors.update(t)
        layout[name] = lay
    return tensors, layout


def _group_dims(shape, granularity: str, bits: int) -> tuple[int, int]:
    """(groups, group_len) that ``quantize_tensor`` uses for a weight of ``shape``."""
    return QuantGrid.parse(bits, granularity).group_dims(shape)


def _compact_layout(layout: dict) -> dict:
    """The layout as written: tensors stored plainly are left out (the safetensors header has their
    dtype and shape), group dimensions are derived from shape + granularity. Keeps small files small."""
    quantized, sparse_float = {}, {}
    for name, lay in layout.items():
        if lay["kind"] == "quantized":
            item = [lay["bits"], lay["granularity"], list(lay["shape"]), 1 if lay.get("sparse") else 0]
            if _group_dims(lay["shape"], lay["granularity"], lay["bits"]) != (lay["groups"], lay["group_len"]):
                item += [lay["groups"], lay["group_len"]]
            quantized[name] = item
        elif lay.get("sparse"):
            sparse_float[name] = list(lay["shape"])
    return {"v": 2, "q": quantized, "s": sparse_float}


def _expand_layout(compact: dict, tensors: dict[str, torch.Tensor]) -> dict:
    """Inverse of ``_compact_layout``: the full per-tensor layout ``decode_state`` reads."""
    layout = {}
    for name, item in compact.get("q", {}).items():
        bits, granularity, shape = item[0], item[1], list(item[2])
        groups, group_len = (item[4], item[5]) if len(item) > 5 else _group_dims(shape, granularity, bits)
        layout[name] = {"kind": "quantized", "bits": bits, "shape": shape, "granularity": granularity,
                        "group_len": int(group_len), "groups": int(groups)}
        if len(item) > 3 and item[3]:
            layout[name]["sparse"] = True
    for name, shape in compact.get("s", {}).items():
        dtype = str(tensors[f"{name}::values"].dtype).replace("torch.", "")
        layout[name] = {"kind": "float", "shape": list(shape), "dtype": dtype, "sparse": True}
    for name, tensor in tensors.items():
        if "::" not in name and name not in layout:
            dtype = str(tensor.dtype).replace("torch.", "")
            layout[name] = {"kind": "float", "shape": list(tensor.shape), "dtype": dtype}
    return layout


def to_bytes(tensors: dict[str, torch.Tensor], layout: dict, metadata: dict | None = None) -> bytes:
    meta = {LAYOUT_KEY: json.dumps(_compact_layout(layout), sort_keys=True, separators=(",", ":"))}
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return st_save(tensors, metadata=meta)


def decode_quantized(name: str, tensors: dict, lay: dict) -> QuantizedWeight:
    shape = tuple(lay["shape"])
    numel = int(np.prod(shape)) if shape else 1
    bits = lay["bits"]
    raw = tensors[f"{name}::codes"].numpy()
    zero = tensors.get(f"{name}::zero")
    if lay.get("sparse"):
        nonzero = np.unpackbits(tensors[f"{name}::mask"].numpy())[:numel].astype(bool)
        kept = int(nonzero.sum())
        values = raw.astype(np.int16) if bits == 8 else unpack_bits(raw, bits, kept).astype(np.int16)
        codes = np.zeros(numel, dtype=np.int16)
        codes[nonzero] = values
        probe = QuantizedWeight(torch.zeros(lay["groups"], lay["group_len"], dtype=torch.int16),
                                tensors[f"{name}::scale"], zero, bits, shape, lay["granularity"])
        if zero is not None:  # a pruned weight's code is its group's zero-point
            codes[~nonzero] = zero.numpy().astype(np.int16)[_group_of_elements(probe)[~nonzero]]
    else:
        codes = raw.astype(np.int16) if bits == 8 else unpack_bits(raw, bits, numel).astype(np.int16)
    rows = 1 if QuantGrid.parse(bits, lay["granularity"]).granularity == "tensor" else shape[0]
    cols = numel // rows
    padded_cols = lay["groups"] * lay["group_len"] // rows
    grid = np.zeros((rows, padded_cols), dtype=np.int16)
    if zero is not None and padded_cols > cols:  # padding held the zero-point's code
        grid[:] = np.repeat(zero.numpy().astype(np.int16).reshape(rows, -1), lay["group_len"], axis=1)
    grid[:, :cols] = codes.reshape(rows, cols)
    return QuantizedWeight(torch.from_numpy(grid.reshape(lay["groups"], lay["group_len"])),
                           tensors[f"{name}::scale"], zero, bits, shape, lay["granularity"])


def decode_state(tensors: dict[str, torch.Tensor], layout: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Inverse of ``encode_state``: float state dict (dequantized) and the quantized codes."""
    state, quantized = {}, {}
    for name, lay in layout.items():
        if lay["kind"] == "quantized":
            q = decode_quantized(name, tensors, lay)
            quantized[name] = q
            state[name] = dequantize(q)
        elif lay.get("sparse"):
            numel = int(np.prod(lay["shape"]))
            nonzero = torch.from_numpy(np.unpackbits(tensors[f"{name}::mask"].numpy())[:numel].astype(bool))
            values = tensors[f"{name}::values"]
            flat = torch.zeros(numel, dtype=values.dtype)
            flat[nonzero] = values
            state[name] = flat.reshape(lay["shape"])
        else:
            state[name] = tensors[name]
    return state, quantized


def from_bytes(blob: bytes) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Tensors, layout and the other metadata of a stored checkpoint (safetensors: no pickle)."""
    tensors = st_load(blob)
    header_len = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8: 8 + header_len])
    meta = header.get("__metadata__", {})
    layout = json.loads(meta.pop(LAYOUT_KEY))
    if layout.get("v") == 2 and isinstance(layout.get("q"), dict):  # compact form (older files: full layout)
        layout = _expand_layout(layout, tensors)
    return tensors, layout, meta


def ideal_size_bytes(state: dict[str, torch.Tensor], quantized: dict[str, QuantizedWeight], bits: int,
                     sparse_names: set[str] | None = None, float_bits: dict[str, int] | None = None) -> int:
    """Stored weights x bits / 8, plus scales and zero-points, plus every other tensor at its stored width.

    For weights pruned unstructured (``sparse_names``) only the nonzero weights count: the
    position index a real sparse format needs is the overhead this figure leaves out.
    """
    sparse_names = sparse_names or set()
    float_bits = float_bits or {}
    total = 0.0
    for name, tensor in state.items():
        float_bytes = 2 if float_bits.get(name, bits) == 16 else 4
        count = int((tensor != 0).sum()) if name in sparse_names else tensor.numel()
        if name in quantized:
            q = quantized[name]
            total += count * q.bits / 8 + q.scale.numel() * 2
            if q.zero_point is not None:
                total += q.zero_point.numel()
        elif tensor.is_floating_point():
            total += count * float_bytes
        else:
            total += tensor.numel() * tensor.element_size()
    return int(round(total))
