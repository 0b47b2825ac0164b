"""One quantization grid (techniques/grid.py) for the classifier's storage, the LLM quantizers, the writers and
the flags: every spelling parses to the same grid, bad values are one-line ConfigErrors, and the two
quantizers agree on a grid both support."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gemini_core.config import CompressionConfig, LayerOverride, storage_grid
from gemini_core.errors import ConfigError
from gemini_core.kinds.classifier.spec import SweepSpec
from gemini_core.kinds.llm.grids import asym_grid_codes, grid_codes, recover
from gemini_core.kinds.llm.point import LLMPointConfig
from gemini_core.kinds.llm.quantize import check_grid, group_size_of, llm_grid, rtn
from gemini_core.kinds.llm.sensitivity import LLMSensitivityParams
from gemini_core.kinds.llm.sweep import LLMSweepSpec
from gemini_core.techniques.grid import QuantGrid
from gemini_core.techniques.quantize import dequantize, quantize_on_grid, quantize_tensor

G64 = QuantGrid(4, "group", 64)


@pytest.mark.parametrize("text", ["group-64", "64", "g64", "G64", " group-64 ", "group64", 64, 64.0])
def test_every_group_spelling_is_the_same_grid(text):
    assert QuantGrid.parse(4, text) == G64 == QuantGrid(4, "group-64")
    assert QuantGrid.parse(4, text).granularity_text == "group-64"  # the stored spelling
    assert QuantGrid.parse_granularity(text) == ("group", 64)


@pytest.mark.parametrize("text", ["per-channel", "channel", "none", "", None])
def test_every_channel_spelling_is_the_same_grid(text):
    grid = QuantGrid.parse(4, text)
    assert grid == QuantGrid(4) and grid.group_size is None and grid.granularity_text == "per-channel"


def test_per_tensor_spellings():
    assert QuantGrid.parse(8, "per-tensor") == QuantGrid.parse(8, "tensor") == QuantGrid(8, "tensor")
    assert QuantGrid(8, "tensor").granularity_text == "per-tensor"


def test_both_doors_read_the_same_spellings_and_keep_the_stored_ones():
    # the classifier: --granularity, stored configs, overrides
    for text in ("group-64", "64", "g64"):
        assert CompressionConfig(bits=4, granularity=text).granularity == "group-64"
        assert LayerOverride("fc", granularity=text).granularity == "group-64"
    assert CompressionConfig(bits=4, granularity="group-64").key() == CompressionConfig(bits=4, granularity="64").key()
    assert SweepSpec.from_strings(bits="4", granularities="64,g64,group-64,none").granularities == \
        ("group-64", "per-channel")
    # the LLM: --group-size, point configs, the sensitivity profile
    spec = LLMSweepSpec.from_strings(quant_methods="rtn", bits="4", group_sizes="per-channel,64,g64,group-64")
    assert spec.group_sizes == (None, 64)
    assert LLMPointConfig(quant_method="rtn", bits=4, group_size="g64").group_size == 64
    assert LLMSensitivityParams(group_size="group-32").group_size == 32
    assert LLMSensitivityParams(group_size="per-channel").group_size is None
    assert [group_size_of(t) for t in ("none", "", None, 32, "g32")] == [None, None, None, 32, 32]


@pytest.mark.parametrize("make, match", [
    (lambda: QuantGrid.parse(1, "64"), "bits 1 not supported"),
    (lambda: QuantGrid.parse(33, None), "bits 33 not supported"),
    (lambda: QuantGrid.parse(4.5, None), "bits 4.5 must be a whole number"),
    (lambda: QuantGrid.parse(True, None), "bits True must be a whole number"),
    (lambda: QuantGrid.parse(4, "group-0"), "group size 0 must be a whole number of at least 1"),
    (lambda: QuantGrid.parse(4, -8), "group size -8"),
    (lambda: QuantGrid.parse(4, "g-1"), "unknown granularity 'g-1'"),
    (lambda: QuantGrid.parse(4, "per-row"), "unknown granularity 'per-row'"),
    (lambda: QuantGrid.parse(4, True), "unknown granularity True"),
    (lambda: QuantGrid.parse(4, "64", symmetric="yes"), "symmetric must be true or false"),
    (lambda: QuantGrid(4, "group"), "needs a group size"),
    (lambda: QuantGrid(4, "channel", 64), "has no group size"),
    (lambda: QuantGrid(4, "group-64", 32), "disagree"),
    (lambda: QuantGrid(32).qmax, "float"),
    (lambda: QuantGrid.from_dict({"bits": 4, "groups": 2}), "unknown quantization grid field"),
    (lambda: QuantGrid.from_dict({"granularity": "g64"}), "needs at least 'bits'"),
    (lambda: QuantGrid(4, "group", 7).check_columns(64), "group size 7 does not divide the 64 input columns"),
    # the doors: the classifier's menu, the LLM's 2-8 bits, per channel or grouped
    (lambda: CompressionConfig(bits=4, granularity="group-7"), "unknown granularity 'group-7'"),
    (lambda: CompressionConfig(bits=4, granularity="g 64"), "unknown granularity 'g 64'"),
    (lambda: LLMSweepSpec.from_strings(quant_methods="rtn", group_sizes="per-tensor"), "group sizes: .*per tensor"),
    (lambda: LLMSweepSpec.from_strings(quant_methods="rtn", group_sizes="64,x"), "group sizes: unknown granularity"),
    (lambda: LLMPointConfig(quant_method="rtn", bits=4, group_size=0), "group size 0"),
    (lambda: check_grid(1, 32, 64), "bits must be between 2 and 8, not 1"),
    (lambda: llm_grid(QuantGrid(4, "tensor")), "not per tensor"),
])
def test_bad_values_are_one_line_config_errors(make, match):
    with pytest.raises(ConfigError, match=match) as caught:
        make()
    assert "\n" not in str(caught.value)


def test_codes_range_and_labels():
    assert (QuantGrid(4).qmin, QuantGrid(4).qmax) == (-8, 7)
    assert (QuantGrid(4, symmetric=False).qmin, QuantGrid(4, symmetric=False).qmax) == (0, 15)
    assert (QuantGrid(8).qmin, QuantGrid(8).qmax) == (-128, 127)
    assert G64.label() == "4-bit group-64" and G64.label(short=True) == "4-bit g64"
    assert QuantGrid(32).label() == "32-bit" and QuantGrid(3).label(short=True) == "3-bit per-channel"
    # the labels each kind has always shown, now from the grid
    assert CompressionConfig(bits=4, granularity="group-32").label().endswith(f"{QuantGrid(4, 'group-32').label()} "
                                                                              "/ dense")
    assert LLMPointConfig(quant_method="rtn", bits=4, group_size=64).label() == f"rtn {G64.label(short=True)}"


@pytest.mark.parametrize("grid", [QuantGrid(4), QuantGrid(8, "tensor"), QuantGrid(3, "group", 32, False),
                                  QuantGrid(32), QuantGrid(16, "group-128", symmetric=False)])
def test_to_dict_round_trips(grid):
    assert QuantGrid.from_dict(grid.to_dict()) == grid
    assert grid.to_dict()["granularity"] == grid.granularity_text


def test_from_dict_reads_the_llm_records_shape():
    record = {"bits": 4, "group_size": 64, "symmetric": False}  # quantize_model's step record
    assert QuantGrid.from_dict(record) == QuantGrid(4, "group", 64, False)
    assert QuantGrid.from_dict({"bits": 8, "group_size": None}) == QuantGrid(8)


def test_points_carry_their_grid():
    assert LLMPointConfig().grid is None
    assert LLMPointConfig(quant_method="rtn", bits=4, group_size=64).grid == G64
    assert LLMPointConfig(quant_method="gptq-asym", bits=4, group_size=32).grid == QuantGrid(4, "group", 32, False)
    assert LLMPointConfig(quant_method="gptq", bits=8).grid == QuantGrid(8)
    # the classifier stores 8 bits symmetric, fewer asymmetric
    assert CompressionConfig(bits=4, granularity="group-32").grid == QuantGrid(4, "group", 32, False)
    assert CompressionConfig(bits=8).grid == storage_grid(8, "per-channel") == QuantGrid(8)


def test_group_dims_are_the_storage_layout():
    w = torch.randn(6, 3, 3, 5)  # 45 columns: groups of 32 pad each row to 64
    for grid in (QuantGrid(4, "tensor", symmetric=False), QuantGrid(4, symmetric=False),
                 QuantGrid(4, "group", 32, False), QuantGrid(8, "group", 64)):
        assert tuple(quantize_on_grid(w, grid).codes.shape) == grid.group_dims(w.shape)
    assert QuantGrid(4, "group", 32).group_dims((6, 45)) == (12, 32)


def _exact_fp16_groups(rows: int, cols: int, group: int, bits: int, seed: int) -> torch.Tensor:
    """Random weights whose every group spans exactly qmax steps of a power-of-two scale, so the classifier's
    fp16 scale is the LLM quantizer's float32 one; the values inside are random, so rounding happens."""
    gen = torch.Generator().manual_seed(seed)
    qmax = 2 ** bits - 1
    w = torch.rand(rows, cols // group, group, generator=gen)
    scale = 2.0 ** torch.randint(-8, -2, (rows, cols // group, 1), generator=gen)
    zero = torch.randint(1, qmax, (rows, cols // group, 1), generator=gen).float()
    w = (w * qmax - zero) * scale  # inside [-zero, qmax - zero] steps
    w[..., 0:1], w[..., 1:2] = -zero * scale, (qmax - zero) * scale  # the range is exactly qmax steps
    return w.reshape(rows, cols)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 7])
@pytest.mark.parametrize("group", [None, 32, 64])
def test_classifier_and_llm_quantizers_agree_on_an_asymmetric_grid(bits, group):
    grid = QuantGrid(bits, "group" if group else "channel", group, symmetric=False)
    w = _exact_fp16_groups(16, 128, group or 128, bits, seed=bits)
    classifier = dequantize(quantize_on_grid(w, grid))
    llm = rtn(w, grid)
    torch.testing.assert_close(classifier, llm, rtol=0, atol=1e-7)
    assert not torch.equal(llm, w)  # the interior values were rounded, not kept
    # on any weights the only difference is the classifier's fp16 scale: within one step, a hundredth on average
    w = torch.randn(16, 128, generator=torch.Generator().manual_seed(bits))
    groups = w.reshape(16, -1, group or 128)
    step = (groups.amax(-1).clamp(min=0) - groups.amin(-1).clamp(max=0)) / grid.qmax
    step = step[..., None].expand_as(groups).reshape(16, 128)
    diff = (dequantize(quantize_on_grid(w, grid)) - rtn(w, grid)).abs() / step
    assert float(diff.max()) <= 1.05 and float(diff.mean()) <= 0.02
    # and both quantize_tensor's spelling and the writers' recovery see the same grid
    assert torch.equal(dequantize(quantize_tensor(w, bits, grid.granularity_text)), dequantize(quantize_on_grid(w, grid)))
    assert asym_grid_codes(llm.numpy(), grid)[3] == 0


@pytest.mark.parametrize("granularity", ["per-channel", "group-32"])
def test_both_quantizers_land_on_the_symmetric_8_bit_grid(granularity):
    """The classifier's int8 (codes -127..127, scale max/127) and the LLM's symmetric 8 bits (scale max*2/255)
    pick their scales differently, so their values differ; both sit on the one grid the writers recover."""
    grid = QuantGrid.parse(8, granularity)
    w = torch.randn(8, 96, generator=torch.Generator().manual_seed(0))
    classifier = dequantize(quantize_on_grid(w, grid)).numpy()
    llm = rtn(w, grid).numpy()
    for values in (classifier, llm):
        codes, scale, off = recover(values, grid)
        assert off == 0
        rebuilt = (codes.astype(np.float32) * scale).reshape(values.shape)
        np.testing.assert_allclose(rebuilt, values, rtol=0, atol=1e-6)


def test_the_writers_accept_a_grid_or_bits_and_a_group():
    w = rtn(torch.randn(8, 64, generator=torch.Generator().manual_seed(1)), 4, 32).numpy()
    for a, b in zip(grid_codes(w, QuantGrid(4, "group", 32)), grid_codes(w, 4, 32)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(asym_grid_codes(w, QuantGrid(4, "g32", symmetric=False)), asym_grid_codes(w, 4, 32)):
        np.testing.assert_array_equal(a, b)
    assert torch.equal(rtn(torch.from_numpy(w), G64), rtn(torch.from_numpy(w), 4, 64))
    assert torch.equal(rtn(torch.from_numpy(w), QuantGrid(3, symmetric=False)),
                       rtn(torch.from_numpy(w), 3, None, symmetric=False))


def test_the_grid_keeps_its_number_rules_as_a_pydantic_settings_class():
    import dataclasses

    assert QuantGrid(8.0) == QuantGrid(8) and type(QuantGrid(8.0).bits) is int  # a whole float is the number
    assert QuantGrid(4, "group", 64.0).group_size == 64 and QuantGrid(4, "group", np.int64(64)) == G64
    for bad, match in ((lambda: QuantGrid("8"), "bits '8' must be a whole number"),
                       (lambda: QuantGrid(4, "group", "64"), "group size '64' must be a whole number"),
                       (lambda: QuantGrid(4, "group", 0), "group size 0 must be a whole number of at least 1"),
                       (lambda: QuantGrid(4, symmetric=1), "symmetric must be true or false, not 1"),
                       (lambda: dataclasses.replace(G64, bits=17), "bits 17 not supported by a quantization grid"),
                       (lambda: QuantGrid(4, groups=2), "QuantGrid has no setting 'groups'")):
        with pytest.raises(ConfigError, match=match):
            bad()
    assert {G64: 1}[QuantGrid(4, "g64")] == 1 and dataclasses.replace(G64, bits=8) == QuantGrid(8, "group", 64)


def test_the_llm_grid_and_profile_keep_their_rules_as_settings_classes():
    import dataclasses

    spec = LLMSweepSpec(quant_methods="rtn", bits=[8, 4, 4], executions="torch", settings={"context_len": 256, "new": 1})
    assert spec.bits == (8, 4) and spec.quant_methods == ("rtn",) and spec.settings.context_len == 256
    assert LLMSweepSpec.from_dict(spec.to_dict()) == spec and len({spec, LLMSweepSpec.from_dict(spec.to_dict())}) == 1
    assert LLMSensitivityParams(bits=[3, 4, 4, "3"], keep=2).bits == (4, 3)  # read with int(), highest first
    for make, match in ((lambda: LLMSweepSpec(executions=5), "LLM execution 5 is not available"),
                        (lambda: LLMSweepSpec(settings={"context_len": 0}), "context len 0 must be a whole number"),
                        (lambda: LLMSweepSpec(settings=5), "settings 5"),
                        (lambda: LLMSweepSpec(quant_methods="rtn", bits=(True,)), "2 to 8 bits, not 1"),
                        (lambda: dataclasses.replace(spec, executions=("tensorrt",)), "'tensorrt' is not available"),
                        (lambda: LLMSweepSpec(bitz=(4,)), "LLMSweepSpec has no setting 'bitz'"),
                        (lambda: LLMSensitivityParams(bits=()), r"LLM sensitivity bits \(\) must be between 2 and 8"),
                        (lambda: LLMSensitivityParams(bits=(9,)), "LLM sensitivity bits 9 must be between 2 and 8"),
                        (lambda: LLMSensitivityParams(bits=("x",)), "LLM sensitivity bits 'x' must be a whole number"),
                        (lambda: LLMSensitivityParams(bits=4), "LLM sensitivity bits must be a list, not 4"),
                        (lambda: LLMSensitivityParams(keep=True), "keep True must be a whole number of at least 1"),
                        (lambda: LLMSensitivityParams(keep=2.0), "keep 2.0 must be a whole number"),
                        (lambda: LLMSensitivityParams(group_size="per-tensor"), "not per tensor")):
        with pytest.raises(ConfigError, match=match) as caught:
            make()
        assert "\n" not in str(caught.value)
