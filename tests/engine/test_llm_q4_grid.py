"""4-bit recipes: GPTQ with activation order and range clipping stay on runs of consecutive
columns (the layout runtimes store), and an asymmetric grid is carried into OpenVINO exactly."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm import quantize
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings
from gemini_core.kinds.llm.runtimes.ov_weights import asym_grid_codes, grid_codes
from tests.engine.llm_support import one_llm_point
from tests.engine.test_llm_quantize import correlated_inputs, hessian, output_error


def test_act_order_beats_plain_gptq_when_loud_inputs_come_last_and_keeps_consecutive_groups():
    x = correlated_inputs()  # loud channels last: the worst order for plain GPTQ
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(3))
    plain = quantize.gptq(w, hessian(x), bits=3, group_size=32)
    ordered = quantize.gptq(w, hessian(x), bits=3, group_size=32, act_order=True)
    assert output_error(ordered, w, x) < 0.9 * output_error(plain, w, x)
    # each run of 32 consecutive input columns shares one grid: recovered with no group off it
    assert grid_codes(ordered.numpy(), 3, 32)[2] == 0


def test_clipping_lowers_the_rounding_error_of_heavy_tailed_weights():
    torch.manual_seed(0)
    w = torch.distributions.StudentT(3.0).sample((64, 128))
    for symmetric in (True, False):
        plain = (quantize.rtn(w, 4, 64, symmetric) - w).pow(2).sum()
        clipped = (quantize.rtn(w, 4, 64, symmetric, clip=True) - w).pow(2).sum()
        assert clipped < 0.98 * plain  # measured 0.89 (sym) / 0.94 (asym)


def test_clipped_asymmetric_gptq_stays_on_an_asymmetric_grid():
    x = correlated_inputs()
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(4))
    for act_order in (False, True):
        q = quantize.gptq(w, hessian(x), 4, 32, symmetric=False, act_order=act_order, clip=True)
        assert asym_grid_codes(q.numpy(), 4, 32)[3] == 0


def test_options_that_do_not_apply_are_refused(tiny_lm):
    with pytest.raises(ConfigError, match="activation order is a GPTQ option"):
        quantize.quantize_model(copy.deepcopy(tiny_lm.model), "rtn", 4, 32, act_order=True)


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_asym_grid_codes_recover_the_products_asymmetric_grid_exactly(bits):
    w = torch.randn(48, 128, generator=torch.Generator().manual_seed(bits))
    q = quantize.rtn(w, bits, 32, symmetric=False).numpy()
    codes, scale, zero, off = asym_grid_codes(q, bits, 32)
    assert off == 0 and codes.max() <= 2 ** bits - 1 and zero.max() <= 2 ** bits - 1
    np.testing.assert_allclose(((codes.astype(np.float32) - zero) * scale).reshape(q.shape), q, rtol=0, atol=1e-6)
    assert grid_codes(q, bits, 32)[2] > 0  # not a symmetric grid
    assert asym_grid_codes(w.numpy(), bits, 32)[3] > 0  # float weights are on no grid: counted


def test_openvino_carries_asymmetric_gptq_weights_exactly(tiny_lm):
    from gemini_core.kinds.llm import text_data
    from gemini_core.kinds.llm.runtimes.run import load_runner

    model = copy.deepcopy(tiny_lm.model)
    calib = text_data.calibration_batch(tiny_lm.tokenizer, text_data.load_split(), 4, 64)
    quantize.quantize_model(model, "gptq", 4, 32, symmetric=False, calib_ids=calib, clip=True)
    settings = LLMRunSettings(prompt_tokens=8, new_tokens=6, prefill_tokens=16, repeats=1, context_len=32,
                              head_bits=None, kv_cache_precision="f32", weight_bits=4, group_size=32)
    runner, _ = load_runner("openvino", model, None, settings)
    info = runner.describe()
    assert info["groups_off_grid"] == 0 and info["layers_asymmetric"] == info["layers_compressed"] == 14
    x = torch.randint(1, 300, (40,), generator=torch.Generator().manual_seed(1))
    ref = model(input_ids=x[None]).logits[0]
    # f16 scales (NNCF's layout): a relative error below 1e-3 per weight
    torch.testing.assert_close(runner.logits(x), ref, atol=1e-2, rtol=1e-2)


def test_gptq_asym_is_a_registered_method_a_point_and_a_sweep_take(tiny_lm):
    from gemini_core.kinds.llm import text_data
    from gemini_core.kinds.llm.calibrate import linear_layers
    from gemini_core.kinds.llm.point import QUANT_METHODS, LLMPointConfig, LLMSettings, compress_llm
    from gemini_core.kinds.llm.sweep import LLMSweepSpec

    assert "gptq-asym" in QUANT_METHODS
    config = LLMPointConfig(quant_method="gptq-asym", bits=4, group_size=32)
    assert config.label() == "gptq-asym 4-bit g32"
    spec = LLMSweepSpec.from_strings(quant_methods="gptq,gptq-asym", bits="4", group_sizes="64")
    assert spec.n_points() == 3 and spec.estimate_seconds() > 0
    settings = LLMSettings(calib_samples=4, calib_seq_len=64)
    model, steps = compress_llm(tiny_lm.model, tiny_lm.tokenizer, text_data.load_split(), config, settings)
    assert steps[0]["method"] == "gptq-asym" and steps[0]["algorithm"] == "gptq"
    assert steps[0]["act_order"] and steps[0]["clip"] and not steps[0]["symmetric"]
    weight = linear_layers(model)["0.mlp.down_proj"].weight.detach().numpy()
    assert asym_grid_codes(weight, 4, 32)[3] == 0 and grid_codes(weight, 4, 32)[2] > 0


def test_an_asymmetric_point_on_the_source_grid_is_refused_in_one_line():
    from gemini_core.kinds.llm.source import SMOLLM2_SOURCE
    from gemini_core.kinds.llm.sweep import LLMSweepSpec, check_source_grid

    with pytest.raises(ConfigError, match="gptq-asym 4-bit g32 would reproduce the source weights' own grid"):
        check_source_grid(SMOLLM2_SOURCE, LLMSweepSpec(quant_methods=("gptq-asym",), bits=(4,), group_sizes=(32,)))
    # other group sizes, other bits and the symmetric grid at g32 are measured
    check_source_grid(SMOLLM2_SOURCE, LLMSweepSpec(quant_methods=("gptq-asym", "gptq"), bits=(4, 8),
                                                   group_sizes=(64,)))
    check_source_grid(SMOLLM2_SOURCE, LLMSweepSpec(quant_methods=("gptq",), bits=(4,), group_sizes=(32,)))
    check_source_grid({}, LLMSweepSpec(quant_methods=("gptq-asym",), bits=(4,), group_sizes=(32,)))


def test_the_recipe_schema_takes_every_registered_method():
    from typing import get_args

    from gemini_core.checkpoint.schema import LlmPointFields
    from gemini_core.kinds.llm.point import QUANT_METHODS, LLMPointConfig

    assert set(get_args(LlmPointFields.model_fields["quant_method"].annotation)) == set(QUANT_METHODS)
    LlmPointFields(**LLMPointConfig(quant_method="gptq-asym", bits=4, group_size=64).to_dict())


def test_a_gptq_asym_sweep_point_runs_on_openvino_on_its_own_grid(tiny_llm_dir, tmp_path):
    point = one_llm_point(tiny_llm_dir, tmp_path, "gptq-asym", "openvino")
    assert point["groups_off_grid"] == 0 and point["layers_asymmetric"] == 14
