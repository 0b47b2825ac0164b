"""A transformer export's recipe config against its weights' header: refused before any module
is built, with or without a meta-device build."""
from __future__ import annotations

import pytest
import torch

from gemini_core.checkpoint import shapes
from gemini_core.compress.codec import encode_state, to_bytes
from gemini_core.errors import CheckpointError
from gemini_core.scenarios.hf_models import HFClassifier

CONFIG = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
          "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 64, "num_labels": 2}


@pytest.fixture(scope="module")
def blob():
    torch.manual_seed(0)
    state = HFClassifier.from_config_dict(CONFIG).state_dict()
    return to_bytes(*encode_state(state, {}, 32))


def _recipe(pruned=False, **config):
    recipe = {"scenario": {"arch": {"scenario": "hf:x", "model": "hf", "source": "x", "num_labels": 2,
                                    "config": {**CONFIG, **config}}}}
    if pruned:
        recipe["pruning"] = {"history": [["x", False, [0]]]}
    return recipe


CASES = [
    ("hidden", {"hidden_size": 48}, "hidden_size is 48 but model.safetensors holds"),
    ("vocab", {"vocab_size": 120}, "vocab_size is 120 but model.safetensors holds"),
    ("ffn", {"intermediate_size": 32}, "intermediate_size is 32 but model.safetensors holds"),
    ("layers", {"num_hidden_layers": 3}, "num_hidden_layers is 3 but model.safetensors holds 2 layers"),
    ("hidden-string", {"hidden_size": "wide"}, "hidden_size is 'wide'"),
]


@pytest.mark.parametrize("meta", [True, False], ids=["meta-build", "no-meta-build"])
@pytest.mark.parametrize("case_id, config, message", CASES, ids=[c[0] for c in CASES])
def test_config_against_header(case_id, config, message, meta, blob, monkeypatch):
    if not meta:  # a model whose constructor calls .item() cannot be built on the meta device
        monkeypatch.setattr(shapes, "check_param_count", lambda build, what: None)
    built = []
    real = HFClassifier.from_config_dict
    monkeypatch.setattr(HFClassifier, "from_config_dict", staticmethod(lambda c: built.append(c) or real(c)))
    with pytest.raises(CheckpointError, match="recipe.json: field scenario.arch.config") as caught:
        shapes.check_recipe_fits_weights(_recipe(**config), blob)
    assert message in str(caught.value), str(caught.value)
    assert built == [] or meta  # only the meta build (shapes, no memory) may have run


def test_pruned_export_may_be_narrower_never_wider(blob):
    shapes.check_recipe_fits_weights(_recipe(pruned=True, intermediate_size=128), blob)  # pruned 64 of 128: fine
    with pytest.raises(CheckpointError, match="intermediate_size is 32"):
        shapes.check_recipe_fits_weights(_recipe(pruned=True, intermediate_size=32), blob)


def test_honest_recipe_passes_and_header_is_counted(blob, monkeypatch):
    found = shapes.check_recipe_fits_weights(_recipe(), blob)
    assert found["hf.bert.embeddings.word_embeddings.weight"] == (100, 32)
    monkeypatch.setenv("GEMINI_MAX_PARAMS", "1000")
    with pytest.raises(CheckpointError, match="parameters in the header, above the limit of 1,000"):
        shapes.check_recipe_fits_weights(_recipe(), blob)


@pytest.mark.parametrize("damage", [b"", b"\xff" * 8 + b"{}", (10).to_bytes(8, "little") + b"not json!!"])
def test_damaged_header_is_one_line(damage):
    with pytest.raises(CheckpointError, match="model.safetensors has a damaged header"):
        shapes.stored_shapes(damage)
