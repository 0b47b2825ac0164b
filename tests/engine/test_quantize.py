import numpy as np
import pytest
import torch

from gemini_core.compress.codec import (
    decode_state,
    encode_state,
    from_bytes,
    ideal_size_bytes,
    pack_bits,
    to_bytes,
    unpack_bits,
)
from gemini_core.techniques.quantize import dequantize, quantization_error, quantize_tensor

BITS_BELOW_16 = (8, 6, 4, 3, 2)
GRANULARITIES = ("per-tensor", "per-channel", "group-32", "group-64", "group-128")


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_bit_packing_round_trips_exactly_and_is_dense(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 2**bits, size=1001, dtype=np.uint8)
    packed = pack_bits(codes, bits)
    assert packed.dtype == np.uint8
    assert packed.size == -(-codes.size * bits // 8)  # ceil(n * bits / 8): no wasted bytes
    assert np.array_equal(unpack_bits(packed, bits, codes.size), codes)


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_quantization_error_falls_as_bits_rise(granularity):
    weight = torch.randn(64, 200, generator=torch.Generator().manual_seed(0))
    errors = [quantization_error(weight, bits, granularity) for bits in (2, 3, 4, 6, 8)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.02  # int8: under 2% relative error on a Gaussian matrix


def test_finer_granularity_has_smaller_error():
    weight = torch.randn(32, 256, generator=torch.Generator().manual_seed(1))
    weight[0] *= 50  # one outlier channel ruins a per-tensor scale
    tensor = quantization_error(weight, 4, "per-tensor")
    channel = quantization_error(weight, 4, "per-channel")
    group = quantization_error(weight, 4, "group-32")
    assert tensor > channel > group


@pytest.mark.parametrize("bits", BITS_BELOW_16)
def test_zero_stays_exactly_zero(bits):
    weight = torch.randn(16, 64)
    weight[weight.abs() < 0.8] = 0
    restored = dequantize(quantize_tensor(weight, bits, "group-32"))
    assert torch.all(restored[weight == 0] == 0)


@pytest.mark.parametrize("bits", [32, 16, *BITS_BELOW_16])
@pytest.mark.parametrize("granularity", ["per-channel", "group-32", "per-tensor"])
@pytest.mark.parametrize("sparse", [False, True])
def test_storage_round_trips_bit_exactly(bits, granularity, sparse):
    gen = torch.Generator().manual_seed(bits)
    weight = torch.randn(24, 40, generator=gen)  # 40 is not a multiple of 32: exercises group padding
    if sparse:
        weight[torch.rand(weight.shape, generator=gen) < 0.8] = 0
    state = {"layer.weight": weight, "layer.bias": torch.randn(24, generator=gen)}
    quantized = {}
    if bits <= 8:
        q = quantize_tensor(weight, bits, granularity)
        quantized["layer.weight"] = q
        state["layer.weight"] = dequantize(q)
    tensors, layout = encode_state(state, quantized, bits, {"layer.weight"} if sparse else set())
    blob = to_bytes(tensors, layout, {"note": "x"})
    back_tensors, back_layout, meta = from_bytes(blob)
    restored, restored_q = decode_state(back_tensors, back_layout)
    assert meta["note"] == "x"
    expected = state["layer.weight"].to(torch.bfloat16).float() if bits == 16 else state["layer.weight"]
    assert torch.equal(restored["layer.weight"].float(), expected)
    if bits <= 8:
        assert torch.equal(restored_q["layer.weight"].codes, quantized["layer.weight"].codes)
    # the file is never much above the ideal size once headers are set aside
    header = int.from_bytes(blob[:8], "little") + 8
    ideal = ideal_size_bytes(state, quantized, bits, {"layer.weight"} if sparse else set())
    index_bytes = weight.numel() / 8 if sparse else 0  # the 1-bit presence mask of the sparse form
    assert len(blob) - header <= ideal * 1.02 + index_bytes + 8


def test_sparse_form_is_used_only_when_smaller():
    weight = torch.randn(64, 64)
    weight[torch.rand(weight.shape) < 0.9] = 0
    q = quantize_tensor(weight, 4, "per-channel")
    state = {"w": dequantize(q)}
    _, layout_sparse = encode_state(state, {"w": q}, 4, {"w"})
    assert layout_sparse["w"].get("sparse") is True
    dense_weight = torch.randn(64, 64)
    q2 = quantize_tensor(dense_weight, 4, "per-channel")
    _, layout_dense = encode_state({"w": dequantize(q2)}, {"w": q2}, 4, {"w"})
    assert not layout_dense["w"].get("sparse")
