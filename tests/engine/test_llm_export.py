"""GGUF export read back by transformers' GGUF loader; safetensors export read back exactly."""
from __future__ import annotations

import copy

import pytest
import torch

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm import metrics, prune, source, text_data
from gemini_core.kinds.llm.gguf_export import export_gguf

TEXT = "The quick brown fox jumps over the lazy dog."


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_gguf_f32_reloads_bit_exactly_with_its_tokenizer(tiny_lm, tmp_path):
    model = copy.deepcopy(tiny_lm.model)
    prune.prune_model(model, "magnitude", 0.5)  # a compressed model, not the random one
    path = export_gguf(model, tiny_lm.tokenizer, tmp_path / "m.gguf", "f32")
    reloaded, tokenizer = source.load_gguf(path)
    ids = torch.tensor([tiny_lm.tokenizer(TEXT)["input_ids"]])
    assert tokenizer(TEXT)["input_ids"] == ids[0].tolist()
    assert torch.equal(_logits(reloaded, ids), _logits(model, ids))


@pytest.mark.parametrize("qtype, tol", [("f16", 1e-2), ("q8_0", 5e-2), ("q4_0", 0.5)])
def test_gguf_block_types_are_smaller_and_close(tiny_lm, tmp_path, qtype, tol):
    f32 = export_gguf(tiny_lm.model, tiny_lm.tokenizer, tmp_path / "f32.gguf", "f32")
    path = export_gguf(tiny_lm.model, tiny_lm.tokenizer, tmp_path / f"{qtype}.gguf", qtype)
    assert path.stat().st_size < 0.6 * f32.stat().st_size
    reloaded, _ = source.load_gguf(path)
    ids = torch.tensor([[3, 40, 41, 42, 7]])
    diff = (_logits(reloaded, ids) - _logits(tiny_lm.model, ids)).abs().max()
    assert 0 < diff < tol


def test_safetensors_export_reproduces_perplexity_exactly(tiny_lm, tmp_path):
    model = copy.deepcopy(tiny_lm.model)
    prune.prune_model(model, "magnitude", 0.5)
    folder = source.save_hf_folder(model, tiny_lm.tokenizer, tmp_path / "out", {"technique": "magnitude 50%"})
    again = source.load_causal_lm(f"hf:{folder}")
    assert again.metadata["technique"] == "magnitude 50%"
    ids = text_data.evaluation_ids(tiny_lm.tokenizer, text_data.load_split(), 300)
    assert metrics.perplexity(again.model, ids, 128) == metrics.perplexity(model, ids, 128)


def test_gguf_export_refuses_other_architectures_and_types(tiny_lm, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300))
    with pytest.raises(ConfigError, match="Llama-architecture"):
        export_gguf(gpt2, tiny_lm.tokenizer, tmp_path / "g.gguf")
    # the export's default (auto) asks first and skips GGUF for such a model instead of failing the export
    from gemini_core.kinds.llm.gguf_export import grid_type, unsupported

    assert "Llama-architecture" in unsupported(gpt2) and unsupported(tiny_lm.model) is None
    assert grid_type(gpt2, None, None) == "f32" and grid_type(tiny_lm.model, 8, None) == "q8_0"
    with pytest.raises(ConfigError, match="GGUF type"):
        export_gguf(tiny_lm.model, tiny_lm.tokenizer, tmp_path / "x.gguf", "q2_k")
