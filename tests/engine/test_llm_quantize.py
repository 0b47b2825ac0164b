"""Round-to-nearest, GPTQ and AWQ: values on the grid, and calibrated methods beat rounding on
the calibration inputs (the quantity they minimise)."""
from __future__ import annotations

import copy

import pytest
import torch

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm import quantize
from gemini_core.kinds.llm.calibrate import linear_layers


def correlated_inputs(rows=512, cols=64, seed=0, loud=True):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=g)
    x = torch.randn(rows, cols, generator=g) @ mix
    # a few loud channels, as in LLM activations (placed last: the hardest case for GPTQ's order)
    return x * torch.logspace(-1, 1, cols) if loud else x


def output_error(w_new, w, x):
    return float(((x @ (w_new - w).detach().T) ** 2).sum())


def hessian(x):
    return 2 * x.double().T @ x.double() / x.shape[0]


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_rtn_puts_each_group_on_at_most_2_to_the_bits_values(bits):
    w = torch.randn(16, 64)
    q = quantize.rtn(w, bits, 32)
    for group in q.reshape(16, 2, 32).reshape(-1, 32):
        assert group.unique().numel() <= 2 ** bits
    assert (q - w).abs().max() <= w.abs().max() / (2 ** bits - 1) + 1e-6


def test_more_bits_and_smaller_groups_mean_less_error():
    w = torch.randn(64, 128)
    err = {(b, g): float((quantize.rtn(w, b, g) - w).pow(2).sum()) for b in (3, 4, 8) for g in (32, 128)}
    assert err[(8, 32)] < err[(4, 32)] < err[(3, 32)]
    assert err[(4, 32)] < err[(4, 128)]


def test_asymmetric_grid_covers_a_shifted_range_better():
    w = torch.rand(8, 64) + 1.0  # all positive: symmetric wastes half its codes
    sym = (quantize.rtn(w, 4, 64, symmetric=True) - w).abs().mean()
    asym = (quantize.rtn(w, 4, 64, symmetric=False) - w).abs().mean()
    assert asym < sym


def test_group_size_must_divide_the_columns():
    with pytest.raises(ConfigError, match="does not divide"):
        quantize.rtn(torch.randn(4, 576), 4, 128)
    with pytest.raises(ConfigError, match="bits"):
        quantize.rtn(torch.randn(4, 64), 1, 32)


def test_gptq_beats_rtn_on_the_calibration_output_and_stays_on_the_grid():
    x = correlated_inputs(loud=False)
    w = torch.randn(32, 64)
    g = quantize.gptq(w, hessian(x), bits=3, group_size=32)
    r = quantize.rtn(w, 3, 32)
    assert output_error(g, w, x) < 0.7 * output_error(r, w, x)  # measured 0.50
    for group in g.reshape(32, 2, 32).reshape(-1, 32):
        assert group.unique().numel() <= 8


def test_awq_never_does_worse_than_rtn_and_model_level_methods_run(tiny_lm):
    from gemini_core.kinds.llm import text_data

    calib = text_data.calibration_batch(tiny_lm.tokenizer, text_data.load_split(), 4, 64)
    base = tiny_lm.model
    results = {}
    for method in quantize.METHODS:
        model = copy.deepcopy(base)
        record = quantize.quantize_model(model, method, 3, 32, calib_ids=calib)
        assert record["layers"] == 14 and record["bits"] == 3
        results[method] = model
    # On the first block (same inputs for every method) the calibrated ones err less.
    x = _first_block_input(base, calib)
    name = "0.self_attn.q_proj"
    w = linear_layers(base)[name].weight
    errors = {m: output_error(linear_layers(results[m])[name].weight, w, x) for m in results}
    assert errors["gptq"] < errors["rtn"]
    assert errors["awq"] <= errors["rtn"] * 1.0001


def _first_block_input(model, ids):
    captured = {}
    layer = linear_layers(model)["0.self_attn.q_proj"]
    handle = layer.register_forward_hook(lambda _m, inp, _o: captured.setdefault("x", inp[0].detach()))
    with torch.no_grad():
        model(input_ids=ids)
    handle.remove()
    return captured["x"].reshape(-1, layer.in_features)


def test_calibrated_methods_need_calibration_text(tiny_lm):
    with pytest.raises(ConfigError, match="needs calibration"):
        quantize.quantize_model(copy.deepcopy(tiny_lm.model), "gptq", 4, 32)
    with pytest.raises(ConfigError, match="unknown quantization"):
        quantize.quantize_model(tiny_lm.model, "fp4", 4, 32)
