"""The calibrated LM head (quantize's head recipes): GPTQ on the final hidden states, untied from the
embedding, then stored on its own grid by OpenVINO, the compressed-tensors export and GGUF."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from gguf import GGUFReader, quants

from gemini_core.kinds.llm import quantize, text_data
from gemini_core.kinds.llm.head import head_hessian
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings
from gemini_core.kinds.llm.runtimes.ov_weights import grid_codes


@pytest.fixture(scope="module")
def calib(tiny_llm_dir):
    from gemini_core.kinds.llm.source import load_local

    return text_data.calibration_batch(load_local(tiny_llm_dir).tokenizer, text_data.load_split(), 4, 64)


def tied(model):
    model = copy.deepcopy(model)
    model.lm_head.weight = model.model.embed_tokens.weight
    model.config.tie_word_embeddings = True
    return model


def test_the_head_recipe_quantizes_the_head_by_gptq_and_unties_it(tiny_lm, calib):
    model = tied(tiny_lm.model)
    embedding = model.model.embed_tokens.weight.detach().clone()
    record = quantize.quantize_model(model, "gptq-sym-head", 4, 32, calib_ids=calib)
    assert record["head"]["untied_from_embedding"] and not model.config.tie_word_embeddings
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    assert torch.equal(model.model.embed_tokens.weight, embedding)  # the looked-up rows stay float
    assert grid_codes(model.lm_head.weight.detach().numpy(), 4, 32)[2] == 0
    # GPTQ's head beats rounding the same head on the same grid, measured on the head's own inputs
    reference = copy.deepcopy(tiny_lm.model)
    quantize.quantize_model(reference, "gptq-sym-head", 4, 32, calib_ids=calib)  # the same body
    h = head_hessian(reference, calib)
    w = embedding.double()
    rounded = quantize.rtn(embedding, 4, 32, symmetric=True, clip=True).double()

    def error(q):
        d = q - w
        return float(((d @ h) * d).sum())

    assert error(model.lm_head.weight.detach().double()) < 0.8 * error(rounded)
    # a recipe without the head leaves it alone
    plain = tied(tiny_lm.model)
    assert quantize.quantize_model(plain, "gptq-asym", 4, 32, calib_ids=calib)["head"] is None
    assert plain.lm_head.weight is plain.model.embed_tokens.weight


def test_a_quantized_head_reloads_untied_and_packs_with_the_blocks(tiny_lm, calib, tmp_path):
    from gemini_core.kinds.llm.compressed_export import export_compressed, load_compressed
    from gemini_core.kinds.llm.source import load_local, save_hf_folder

    model = tied(tiny_lm.model)
    quantize.quantize_model(model, "gptq-sym-head", 4, 32, calib_ids=calib)
    save_hf_folder(model, tiny_lm.tokenizer, tmp_path / "hf", {"name": "head"})
    again = load_local(tmp_path / "hf").model
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)
    assert torch.equal(again.model.embed_tokens.weight, model.model.embed_tokens.weight)
    summary = export_compressed(model, tiny_lm.tokenizer, tmp_path / "packed", 4, 32)
    assert "lm_head" not in summary["float_layers"] and summary["packed_layers"] == 15
    x = torch.randint(1, 300, (24,), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(load_compressed(tmp_path / "packed")(input_ids=x[None]).logits,
                               model(input_ids=x[None]).logits, atol=1e-4, rtol=1e-4)


def test_openvino_and_gguf_store_the_calibrated_head_on_its_grid(tiny_lm, calib, tmp_path):
    from gemini_core.kinds.llm.gguf_export import export_gguf
    from gemini_core.kinds.llm.runtimes.run import load_runner

    model = tied(tiny_lm.model)
    quantize.quantize_model(model, "gptq-sym-head", 4, 32, calib_ids=calib)
    settings = LLMRunSettings(prompt_tokens=8, new_tokens=6, prefill_tokens=16, repeats=1, context_len=32,
                              kv_cache_precision="f32", weight_bits=4, group_size=32)  # head_bits=8 by default
    runner, _ = load_runner("openvino", model, None, settings)
    info = runner.describe()
    assert (info["head_bits"], info["head_group"], info["head_groups_requantized"]) == (4, 32, 0)
    x = torch.randint(1, 300, (24,), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(runner.logits(x), model(input_ids=x[None]).logits[0], atol=1e-2, rtol=1e-2)
    float_head, _ = load_runner("openvino", tied(tiny_lm.model), None, settings)
    assert float_head.describe()["head_bits"] == 8  # a float head still goes to int8 per channel
    path = export_gguf(model, tiny_lm.tokenizer, tmp_path / "m.gguf", "q4_0")
    tensors = {t.name: t for t in GGUFReader(str(path)).tensors}
    head = tensors["output.weight"]
    assert head.tensor_type.name == "Q4_0" and tensors["token_embd.weight"].tensor_type.name == "Q8_0"
    back = quants.dequantize(np.asarray(head.data), head.tensor_type).reshape(model.lm_head.weight.shape)
    w = model.lm_head.weight.detach().numpy()
    assert np.abs(back - w).max() <= 2e-3 * np.abs(w).max()
