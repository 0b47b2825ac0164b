"""Structured pruning: smaller plain transformers model, same outputs after save and reload."""
from __future__ import annotations

import copy

import pytest
import torch

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm import metrics, source, structured, text_data


@pytest.fixture()
def calib(tiny_lm):
    return text_data.calibration_batch(tiny_lm.tokenizer, text_data.load_split(), 2, 32)


def test_mlp_channels_and_head_groups_are_removed_and_the_model_still_runs(tiny_lm, calib):
    model = copy.deepcopy(tiny_lm.model)
    record = structured.prune_structured(model, calib, mlp_ratio=0.5, head_ratio=0.5)
    assert record["mlp_channels"] == 64 and record["kv_groups"] == 1 and record["attention_heads"] == 2
    assert record["parameters_after"] < record["parameters_before"]
    layer = model.model.layers[1]
    assert layer.mlp.down_proj.weight.shape == (64, 64)
    assert layer.self_attn.q_proj.weight.shape == (32, 64) and layer.self_attn.k_proj.weight.shape == (16, 64)
    ids = text_data.evaluation_ids(tiny_lm.tokenizer, text_data.load_split(), 200)
    assert metrics.perplexity(model, ids, 128)["perplexity"] > 1


def test_ratio_zero_changes_nothing(tiny_lm, calib):
    model = copy.deepcopy(tiny_lm.model)
    structured.prune_structured(model, calib, 0.0, 0.0)
    ids = torch.tensor([[4, 5, 6, 7]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, tiny_lm.model(input_ids=ids).logits)


def test_the_loudest_mlp_channel_is_kept(tiny_lm, calib):
    model = copy.deepcopy(tiny_lm.model)
    down = model.model.layers[0].mlp.down_proj
    with torch.no_grad():
        down.weight[:, 77] *= 1000
        marker = down.weight[:, 77].clone()
    structured.prune_structured(model, calib, mlp_ratio=0.75)
    kept = model.model.layers[0].mlp.down_proj.weight
    assert any(torch.equal(kept[:, j], marker) for j in range(kept.shape[1]))


def test_pruned_model_saves_and_reloads_as_plain_safetensors(tiny_lm, calib, tmp_path):
    model = copy.deepcopy(tiny_lm.model)
    structured.prune_structured(model, calib, mlp_ratio=0.25, head_ratio=0.5)
    folder = source.save_hf_folder(model, tiny_lm.tokenizer, tmp_path / "s", {"technique": "structured"})
    again = source.load_causal_lm(f"hf:{folder}").model
    ids = torch.tensor([[4, 5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(again(input_ids=ids).logits, model(input_ids=ids).logits)


def test_bad_ratio_is_refused(tiny_lm, calib):
    with pytest.raises(ConfigError, match="ratio"):
        structured.prune_structured(copy.deepcopy(tiny_lm.model), calib, mlp_ratio=1.0)
