"""Untrusted input, classes 3 and 7 for Hugging Face model folders (``hf:``), for both kinds: config.json and the
weights' header are checked before allocation, with or without the meta-device build; config.json, the other
JSON files and the tokenizer files are capped before they are read and parsed safely; the model type is one of
a closed list and the weights must be that model's (never a model initialised at random).

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from gemini_core.cli import main

try:
    from tests.engine.untrusted_support import run_cli
except ImportError:  # pragma: no cover
    from untrusted_support import run_cli


# == 3. caps before allocation: Hugging Face model folders ===================================================
@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from gemini_core.scenarios.hf_models import minilm_dir

    folder = tmp_path_factory.mktemp("untrusted_bert") / "model"
    AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True).save_pretrained(folder)
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=64, vocab_size=30522, max_position_embeddings=64,
                                             num_labels=2)).save_pretrained(folder)
    return folder


HF_CONFIG_CASES = [
    ("hidden-mismatch", {"hidden_size": 64}, "hidden_size is 64 but model.safetensors holds"),
    ("hidden-65536", {"hidden_size": 65536, "intermediate_size": 262144, "num_attention_heads": 1},
     "parameters (estimate), above the limit"),
    ("layers-100k", {"num_hidden_layers": 100_000}, "num_hidden_layers is 100000; it must be a whole number"),
    ("layers-2000-estimate", {"num_hidden_layers": 2000, "hidden_size": 4096, "num_attention_heads": 1},
     "parameters (estimate), above the limit"),
    ("vocab-0", {"vocab_size": 0}, "vocab_size is 0"),
    ("hidden-negative", {"hidden_size": -32}, "hidden_size is -32"),
    ("hidden-string", {"hidden_size": "wide"}, "hidden_size"),
]


@pytest.mark.parametrize("case_id, update, message", HF_CONFIG_CASES, ids=[c[0] for c in HF_CONFIG_CASES])
def test_hf_config_checked_before_allocation(case_id, update, message, tiny_bert_dir, home, d, tmp_path,
                                             monkeypatch, capsys):
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **update}))
    argv = ["train", "--scenario", f"hf:{folder}", "--data", str(d / "good.csv"), "--epochs", "1", "--max-steps", "1"]
    line = run_cli(argv, home[0], monkeypatch, capsys, home[1])
    assert message in line, line


def _no_meta_build(monkeypatch):
    """Make the meta-device build fail as it does for a model whose constructor calls ``.item()``."""
    from gemini_core.scenarios import registry, text

    def unbuildable():
        raise RuntimeError("Tensor.item() cannot be called on meta tensors")

    calls = []

    def check(build, what):
        calls.append(what)
        return registry.check_param_count(unbuildable, what)

    monkeypatch.setattr(text, "check_param_count", check)
    return calls


# The guard must not depend on the meta build: the config is checked against the header's shapes and
# the header's parameter count, with the meta build failing like a constructor that calls .item().
NO_META_CASES = [
    ("hidden-mismatch", {"hidden_size": 64}, {}, "hidden_size is 64 but model.safetensors holds"),
    ("vocab-mismatch", {"vocab_size": 1000}, {}, "vocab_size is 1,000 but model.safetensors holds"),
    ("ffn-mismatch", {"intermediate_size": 128}, {}, "intermediate_size is 128 but model.safetensors holds"),
    ("layers-mismatch", {"num_hidden_layers": 3}, {}, "num_hidden_layers is 3 but model.safetensors holds 2 layers"),
    ("header-over-cap", "extra", {"GEMINI_MAX_PARAMS": "2000000"}, "parameters in the header, above the limit of 2,000,000"),
]


@pytest.mark.parametrize("case_id, update, env, message", NO_META_CASES, ids=[c[0] for c in NO_META_CASES])
def test_hf_guard_without_the_meta_build(case_id, update, env, message, tiny_bert_dir, home, d, tmp_path,
                                         monkeypatch, capsys):
    from safetensors.torch import load_file, save_file

    calls = _no_meta_build(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    if update == "extra":  # a config that estimates small, weights that hold 3M parameters more
        tensors = load_file(folder / "model.safetensors")
        save_file({**tensors, "extra.weight": torch.zeros(3000, 1000)}, folder / "model.safetensors")
    else:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **update}))
    argv = ["train", "--scenario", f"hf:{folder}", "--data", str(d / "good.csv"), "--epochs", "1", "--max-steps", "1"]
    line = run_cli(argv, home[0], monkeypatch, capsys, home[1])
    assert message in line, line
    assert calls == []  # refused before even the meta build was tried


def test_hf_model_without_a_meta_build_still_trains(tiny_bert_dir, home, d, tmp_path, monkeypatch, capsys):
    """The control: an honest folder whose meta build fails passes the header checks and trains."""
    calls = _no_meta_build(monkeypatch)
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "own_home"))
    argv = ["train", "--scenario", f"hf:{folder}", "--data", str(d / "good.csv"), "--epochs", "1", "--max-steps", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    assert calls, "the meta build was not even tried"


def test_hf_truncated_safetensors_is_one_line(tiny_bert_dir, home, d, tmp_path, monkeypatch, capsys):
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    blob = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(blob[:1000])
    argv = ["train", "--scenario", f"hf:{folder}", "--data", str(d / "good.csv"), "--epochs", "1", "--max-steps", "1"]
    line = run_cli(argv, home[0], monkeypatch, capsys, home[1])
    assert "damaged or truncated" in line, line


# == 3 and 7. the causal LM's hf: folder: config, weights and tokenizer checked before anything is built =====
def _edit_config(folder, update=None, drop=()):
    config = json.loads((folder / "config.json").read_text())
    config.update(update or {})
    for key in drop:
        config.pop(key, None)
    (folder / "config.json").write_text(json.dumps(config))


def cfg(drop=(), **update):
    return lambda folder: _edit_config(folder, update, drop)


def write(name, data):
    def edit(folder):
        path = folder / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return edit


def remove(*names):
    def edit(folder):
        for name in names:
            (folder / name).unlink()
    return edit


def nested_json(depth: int, base: dict | None = None) -> str:
    """A config whose one extra field nests ``depth`` lists deep."""
    body = json.dumps(base or {"model_type": "llama"})[:-1]
    return body + ', "deep": ' + "[" * depth + "]" * depth + "}"


def config_text(folder, edit):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(edit(config))


def sparse(name, size):
    def edit(folder):
        with open(folder / name, "wb") as handle:
            handle.truncate(size)
    return edit


def weights(drop=(), add=None, replace=None):
    def edit(folder):
        from safetensors.torch import load_file, save_file

        tensors = load_file(folder / "model.safetensors")
        for name in drop:
            del tensors[name]
        tensors.update(add or {})
        tensors.update(replace or {})
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return edit


def tokenizer_json(edit_fn):
    def edit(folder):
        tok = json.loads((folder / "tokenizer.json").read_text())
        edit_fn(tok)
        (folder / "tokenizer.json").write_text(json.dumps(tok))
    return edit


def _more_tokens(tok):
    tok["added_tokens"] += [{"id": 300 + i, "content": f"<extra{i}>", "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True} for i in range(5)]


def _tokenizer_remote(folder):
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["evil.Tokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


# (case id, edit(folder), words the one line must hold)
LLM_FOLDER_CASES = [
    ("model-type-unknown", cfg(model_type="no-such-model"), "model_type 'no-such-model' is not a causal LM"),
    ("bert-config-over-llama-weights", cfg(model_type="bert"), "model_type 'bert' is not a causal LM"),
    ("qwen2-config-over-llama-weights", cfg(model_type="qwen2", architectures=["Qwen2ForCausalLM"]),
     "lack model.layers.0.self_attn.q_proj.bias"),
    ("architectures-other", cfg(architectures=["BertForMaskedLM"]), "architectures"),
    ("kv-heads-not-dividing", cfg(num_key_value_heads=3), "num_key_value_heads 3 does not divide num_attention_heads 4"),
    ("head-dim-mismatch", cfg(head_dim=8), "model.layers.0.self_attn.q_proj.weight is [64, 64] in"),
    ("hidden-size-missing", cfg(drop=("hidden_size",)), "has no hidden_size"),
    ("hidden-act-unknown", cfg(hidden_act="evil"), "hidden_act is 'evil'"),
    ("rms-eps-string", cfg(rms_norm_eps="tiny"), "rms_norm_eps is 'tiny'"),
    ("eos-out-of-range", cfg(eos_token_id=5000), "eos_token_id is 5000"),
    ("config-nan", lambda f: config_text(f, lambda c: json.dumps({**c, "rms_norm_eps": float("nan")})), "NaN"),
    ("config-nested-100k", lambda f: config_text(f, lambda c: nested_json(100_000, c)), "nested deeper than"),
    ("config-nested-64", lambda f: config_text(f, lambda c: nested_json(64, c)), "nested deeper than"),
    ("config-not-utf8", write("config.json", b'{"model_type": "ll\xffama"}'), "config.json is not UTF-8 text"),
    ("config-over-cap", lambda f: config_text(f, lambda c: json.dumps({**c, "pad": "x" * (2 << 20)})),
     "config.json is 2.1 MB; the limit is 1.0 MB"),
    ("generation-config-garbage", write("generation_config.json", "[[["), "generation_config.json is not valid JSON"),
    ("tokenizer-binary", write("tokenizer.json", bytes(range(256)) * 64), "tokenizer.json is not UTF-8 text"),
    ("tokenizer-garbage", write("tokenizer.json", '{"model": nonsense'), "tokenizer.json is not valid JSON"),
    ("tokenizer-wrong-structure", write("tokenizer.json", "{}"), "tokenizer.json"),
    ("tokenizer-1gb", sparse("tokenizer.json", 1 << 30), "tokenizer.json is 1,073.7 MB; the limit is 67.1 MB"),
    ("chat-template-1gb", sparse("chat_template.jinja", 1 << 30), "chat_template.jinja is 1,073.7 MB"),
    ("tokenizer-missing", remove("tokenizer.json", "tokenizer_config.json"), "has no tokenizer.json"),
    ("tokenizer-config-garbage", write("tokenizer_config.json", "{not json"), "tokenizer_config.json is not valid JSON"),
    ("tokenizer-config-remote-code", _tokenizer_remote, "tokenizer_config.json asks for remote code"),
    ("tokenizer-more-tokens-than-vocab", tokenizer_json(_more_tokens), "305 tokens but vocab_size is 300"),
    ("weights-missing-tensor", weights(drop=["model.layers.1.mlp.down_proj.weight"]),
     "lack model.layers.1.mlp.down_proj.weight"),
    ("weights-lm-head-missing", weights(drop=["lm_head.weight"]), "lack lm_head.weight"),
    ("weights-extra-tensor", weights(add={"model.layers.0.mlp.evil.weight": torch.zeros(4)}),
     "hold 'model.layers.0.mlp.evil.weight', which the 2-layer llama config.json does not have"),
    ("weights-wrong-shape", weights(replace={"model.layers.0.self_attn.k_proj.weight": torch.zeros(48, 64)}),
     "model.layers.0.self_attn.k_proj.weight is [48, 64] in"),
    ("weights-int-dtype", weights(replace={"model.norm.weight": torch.zeros(64, dtype=torch.int32)}),
     "model.norm.weight is stored as I32"),
]

LLM_SWEEP = ["--quant", "rtn", "--quant-bits", "8", "--eval-tokens", "64", "--context-len", "32"]


@pytest.mark.parametrize("case_id, edit, message", LLM_FOLDER_CASES, ids=[c[0] for c in LLM_FOLDER_CASES])
def test_llm_folder_is_checked_before_anything_is_built(case_id, edit, message, tiny_llm_dir, home, tmp_path,
                                                        monkeypatch, capsys):
    folder = shutil.copytree(tiny_llm_dir, tmp_path / "model")
    edit(folder)
    argv = ["sweep", "--scenario", "llm", "--model", f"hf:{folder}", *LLM_SWEEP]
    line = run_cli(argv, home[0], monkeypatch, capsys, home[1], progress=True)
    assert message in line, line


@pytest.mark.parametrize("case_id, edit, message", LLM_FOLDER_CASES, ids=[c[0] for c in LLM_FOLDER_CASES])
def test_llm_folder_refusal_builds_no_module(case_id, edit, message, tiny_llm_dir, tmp_path, monkeypatch):
    """The loader entry itself: one CheckpointError line, and no torch module constructed before it."""
    from gemini_core.errors import CheckpointError
    from gemini_core.kinds.llm import source

    folder = shutil.copytree(tiny_llm_dir, tmp_path / "model")
    edit(folder)
    built = []
    init = torch.nn.Module.__init__
    monkeypatch.setattr(torch.nn.Module, "__init__", lambda *a, **k: built.append(1) or init(*a, **k))
    with pytest.raises(CheckpointError) as caught:
        source.load_causal_lm(f"hf:{folder}")
    assert message in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
    assert built == []


def test_llm_folder_pruned_and_tied_variants_still_load(tiny_llm_dir, tmp_path):
    """Controls: a tied head (no lm_head.weight), and a config whose head_dim is not hidden / heads."""
    from gemini_core.kinds.llm import source

    tied = shutil.copytree(tiny_llm_dir, tmp_path / "tied")
    weights(drop=["lm_head.weight"])(tied)
    _edit_config(tied, {"tie_word_embeddings": True})
    lm = source.load_causal_lm(f"hf:{tied}")
    assert lm.model.lm_head.weight.data_ptr() == lm.model.model.embed_tokens.weight.data_ptr()

    from transformers import LlamaConfig, LlamaForCausalLM

    pruned = shutil.copytree(tiny_llm_dir, tmp_path / "pruned")  # the tokenizer; the weights are replaced
    config = json.loads((pruned / "config.json").read_text())
    config.update(num_attention_heads=2, num_key_value_heads=1, head_dim=16, intermediate_size=64)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if k not in ("architectures",)}))
    model.save_pretrained(pruned)
    lm = source.load_causal_lm(f"hf:{pruned}")
    assert lm.model.model.layers[0].self_attn.q_proj.weight.shape == (32, 64)


# == the classifier's hf: folder ===========================================================================
def _llama_weights(tiny_llm_dir):
    """The tiny Llama's weights under a BERT config whose sizes they fit (vocabulary, widths, layers): only the
    tensor names tell that they are not a BERT's."""
    def edit(folder):
        shutil.copy(tiny_llm_dir / "model.safetensors", folder / "model.safetensors")
        _edit_config(folder, {"vocab_size": 300, "hidden_size": 64, "intermediate_size": 128,
                              "num_hidden_layers": 2, "num_attention_heads": 4})
    return edit


CLASSIFIER_FOLDER_CASES = [
    ("config-list", write("config.json", "[]"), "is not a JSON object"),
    ("config-nested-100k", lambda f: config_text(f, lambda c: nested_json(100_000, c)), "nested deeper than"),
    ("config-over-cap", lambda f: config_text(f, lambda c: json.dumps({**c, "pad": "x" * (2 << 20)})),
     "the limit is 1.0 MB"),
    ("config-nan", lambda f: config_text(f, lambda c: json.dumps({**c, "layer_norm_eps": float("nan")})), "NaN"),
    ("model-type-llama", cfg(model_type="llama"), "model_type 'llama' is not a text classifier"),
    ("model-type-missing", cfg(drop=("model_type",)), "has no model_type"),
    ("bert-config-over-llama-weights", None, "holds no embeddings.word_embeddings.weight"),
    ("tokenizer-garbage", write("tokenizer.json", '{"model": nonsense'), "tokenizer.json is not valid JSON"),
    ("tokenizer-wrong-structure", write("tokenizer.json", "{}"), "tokenizer.json"),
    ("tokenizer-1gb", sparse("tokenizer.json", 1 << 30), "tokenizer.json is 1,073.7 MB"),
    ("tokenizer-config-nested", write("tokenizer_config.json", nested_json(100_000)), "nested deeper than"),
]


@pytest.mark.parametrize("case_id, edit, message", CLASSIFIER_FOLDER_CASES,
                         ids=[c[0] for c in CLASSIFIER_FOLDER_CASES])
def test_classifier_folder_is_checked(case_id, edit, message, tiny_bert_dir, tiny_llm_dir, home, d, tmp_path,
                                      monkeypatch, capsys):
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    (edit or _llama_weights(tiny_llm_dir))(folder)
    argv = ["train", "--scenario", f"hf:{folder}", "--data", str(d / "good.csv"), "--epochs", "1", "--max-steps", "1"]
    line = run_cli(argv, home[0], monkeypatch, capsys, home[1])
    assert message in line, line
