"""A causal LM's config.json is untrusted: sizes and the weights' header are checked before any
module is built, each problem one CheckpointError line naming the field."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from gemini_core.errors import CheckpointError
from gemini_core.kinds.llm import source

# (case id, config.json update, environment, words the one line must hold)
CASES = [
    ("hidden-huge", {"hidden_size": 65536, "intermediate_size": 262144, "num_attention_heads": 1,
                     "num_key_value_heads": 1}, {}, "parameters (estimate), above the limit"),
    ("head-dim-over-bound", {"head_dim": 65536}, {}, "head_dim is 65536; it must be a whole number from 1 to 16,384"),
    ("hidden-negative", {"hidden_size": -32}, {}, "hidden_size is -32; it must be a whole number"),
    ("hidden-string", {"hidden_size": "wide"}, {}, "hidden_size is 'wide'"),
    ("hidden-float", {"hidden_size": 32.5}, {}, "hidden_size is 32.5"),
    ("hidden-bool", {"hidden_size": True}, {}, "hidden_size is True"),
    ("layers-100k", {"num_hidden_layers": 100_000}, {}, "num_hidden_layers is 100000"),
    ("vocab-0", {"vocab_size": 0}, {}, "vocab_size is 0"),
    ("heads-0", {"num_attention_heads": 0}, {}, "num_attention_heads is 0"),
    ("hidden-mismatch", {"hidden_size": 96}, {}, "hidden_size is 96 but the .safetensors weights hold"),
    ("vocab-mismatch", {"vocab_size": 999}, {}, "vocab_size is 999 but the .safetensors weights hold"),
    ("layers-mismatch", {"num_hidden_layers": 5}, {}, "num_hidden_layers is 5 but the .safetensors weights hold"),
    ("header-over-cap", None, {"GEMINI_MAX_PARAMS": "1000"}, "above the limit of 1,000"),
    ("not-an-object", [], {}, "is not a JSON object"),
]


@pytest.mark.parametrize("case_id, update, env, message", CASES, ids=[c[0] for c in CASES])
def test_config_sizes_are_checked_before_building(case_id, update, env, message, tiny_llm_dir, tmp_path,
                                                  monkeypatch):
    folder = shutil.copytree(tiny_llm_dir, tmp_path / "model")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = json.loads((folder / "config.json").read_text())
    if update is not None:
        (folder / "config.json").write_text(json.dumps(update if isinstance(update, list) else {**config, **update}))
    built = []
    monkeypatch.setattr(torch.nn.Module, "__init__", lambda *a, **k: built.append(1) or _init(*a, **k))
    with pytest.raises(CheckpointError) as caught:
        source.load_causal_lm(f"hf:{folder}")
    assert message in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
    assert built == []  # no module was constructed before the refusal


_init = torch.nn.Module.__init__


def test_header_over_the_cap_names_the_count(tiny_llm_dir, tmp_path, monkeypatch):
    """The estimate can be fooled by a small config; the header's own count cannot."""
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(tiny_llm_dir, tmp_path / "model")
    weights = folder / "model.safetensors"
    save_file({**load_file(weights), "extra.weight": torch.zeros(3000, 1000)}, weights, metadata={"format": "pt"})
    monkeypatch.setenv("GEMINI_MAX_PARAMS", "2000000")
    with pytest.raises(CheckpointError, match=r": \d,\d{3},\d{3} parameters in the header, above the limit of 2,000,000"):
        source.load_causal_lm(f"hf:{folder}")


def test_honest_folder_still_loads(tiny_llm_dir):
    lm = source.load_causal_lm(f"hf:{tiny_llm_dir}")
    assert sum(p.numel() for p in lm.model.parameters()) > 0
