"""compressed-tensors pack-quantized export: exact integer codes recovered from the engine's
fake-quantized weights, packed by the library and reloaded by transformers with the same outputs."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors import safe_open

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm import compressed_export, metrics, quantize

pytest.importorskip("compressed_tensors")


@pytest.mark.parametrize("bits, group", [(4, 32), (3, None), (8, 64)])
def test_recovered_codes_rebuild_the_quantized_weight(bits, group):
    w = torch.randn(24, 128, generator=torch.Generator().manual_seed(bits))
    wq = quantize.rtn(w, bits, group)
    codes, scale, zero = compressed_export.recover_codes(wq, bits, group)
    assert zero is None and codes.dtype == torch.int8 and int(codes.min()) >= -2 ** (bits - 1) and int(codes.max()) < 2 ** (bits - 1)
    rebuilt = (codes.float().reshape(24, scale.shape[1], -1) * scale.unsqueeze(-1)).reshape(24, 128)
    assert float((rebuilt - wq).abs().max()) <= 1e-6 * float(wq.abs().max())


def test_a_weight_off_the_grid_is_refused():
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="not on a symmetric 4-bit grid"):
        compressed_export.recover_codes(w, 4, 32)
    with pytest.raises(ConfigError, match="not on an asymmetric 4-bit grid"):
        compressed_export.recover_codes(w, 4, 32, symmetric=False)


def _packed_bytes(folder):
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        packed = {k: f.get_tensor(k) for k in f.keys() if k.endswith(".weight_packed")}
    return packed, sum(t.numel() * t.element_size() for t in packed.values())


@pytest.mark.parametrize("method, bits, group", [("rtn", 4, 32), ("gptq", 3, 64), ("gptq-asym", 4, 64)])
def test_pack_quantized_export_reloads_with_the_same_perplexity(tiny_lm, tmp_path, method, bits, group):
    model = copy.deepcopy(tiny_lm.model)
    calib = torch.randint(0, 300, (4, 32), generator=torch.Generator().manual_seed(0))
    quantize.quantize_model(model, method, bits, group, calib_ids=calib)
    out = tmp_path / "ct"
    symmetric = quantize.RECIPES[method].symmetric
    summary = compressed_export.export_compressed(model, tiny_lm.tokenizer, out, bits, group, symmetric)
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors" and config["format"] == "pack-quantized"
    weights = config["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["group_size"], weights["symmetric"]) == (bits, group, symmetric)
    assert config["ignore"] == ["lm_head"] and summary["packed_layers"] == 14
    packed, packed_bytes = _packed_bytes(out)
    float_bytes = sum(lin.weight.numel() * 4 for lin in quantize.linear_layers(model).values())
    assert len(packed) == 14 and packed_bytes == pytest.approx(float_bytes * bits / 32, rel=0.01)
    zero_points = 0 if symmetric else bits / 32 / group  # packed like the codes, one per group
    assert summary["packed_linear_ratio_vs_fp32"] == pytest.approx(bits / 32 + 1 / group + zero_points, rel=0.01)

    reloaded = compressed_export.load_compressed(out)
    ids = torch.randint(0, 300, (96,), generator=torch.Generator().manual_seed(1))
    before = metrics.perplexity(model, ids, 32)["perplexity"]
    after = metrics.perplexity(reloaded, ids, 32)["perplexity"]
    assert after == pytest.approx(before, rel=1e-5)
    original = dict(model.named_parameters())
    for name, p in reloaded.named_parameters():
        assert torch.allclose(p, original[name], rtol=0, atol=1e-6), name


def test_export_refuses_a_float_model_bad_bits_and_a_used_folder(tiny_lm, tmp_path):
    with pytest.raises(ConfigError, match="not on a symmetric 4-bit grid"):
        compressed_export.export_compressed(tiny_lm.model, None, tmp_path / "a", 4, 32)
    with pytest.raises(ConfigError, match="2 to 8 bits"):
        compressed_export.export_compressed(tiny_lm.model, None, tmp_path / "b", 16, None)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        compressed_export.export_compressed(tiny_lm.model, None, tmp_path / "c", 4, 32)


def test_awq_weights_are_refused_with_the_reason(tiny_lm, tmp_path):
    model = copy.deepcopy(tiny_lm.model)
    calib = torch.randint(0, 300, (4, 32), generator=torch.Generator().manual_seed(0))
    quantize.quantize_model(model, "awq", 4, 32, calib_ids=calib)
    with pytest.raises(ConfigError, match="AWQ"):
        compressed_export.export_compressed(model, None, tmp_path / "awq", 4, 32)
