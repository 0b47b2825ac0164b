"""The checks an hf: folder (and the built-in model's cache) passes before transformers builds anything from it:
no remote code or pickled weights, config.json's sizes within bounds and consistent, the safetensors headers (read
without loading) matching the config, the tokenizer files capped and parsed. Split from ``source.py``."""
from __future__ import annotations

import math
from pathlib import Path

from gemini_core.errors import CheckpointError
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

UNSAFE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
META_FILE = "gemini_llm.json"  # the product's own metadata beside the weights (source.py writes it)


# The causal LMs an hf: folder may hold: the Llama family, whose tensors the config fully describes and which
# every execution here supports. {model_type: the classes its config may name in "architectures"}.
LLM_MODEL_TYPES = {"llama": ("LlamaForCausalLM",), "mistral": ("MistralForCausalLM",),
                   "qwen2": ("Qwen2ForCausalLM",)}
REQUIRED_SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
FLOAT_DTYPES = ("F32", "F16", "BF16")


def check_local_folder(folder: Path) -> Path:
    """Refuse what could run code (remote code in config.json or tokenizer_config.json, pickled weights) and
    what would not load as described: config.json, the weights' headers and the tokenizer files are checked
    before any module is built."""
    return _checked_folder(folder)[0]


def _checked_folder(folder) -> tuple[Path, dict]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"model folder {folder} does not exist")
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{folder} has no config.json; it is not a transformers model folder")
    cfg = read_json_object(config, MAX_CONFIG_BYTES)
    if "auto_map" in cfg:
        raise CheckpointError(f"{config} asks for remote code (auto_map); it is never run")
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in UNSAFE_WEIGHT_SUFFIXES)
    if pickled:
        raise CheckpointError(f"{folder} holds pickled weights ({pickled[0]}); only safetensors are loaded")
    if not any(folder.glob("*.safetensors")):
        raise CheckpointError(f"{folder} holds no .safetensors weights")
    check_sizes(folder, cfg)
    for name in ("generation_config.json", META_FILE):  # transformers reads the first, we the second
        if (folder / name).exists():
            read_json_object(folder / name, MAX_CONFIG_BYTES)
    check_tokenizer_files(folder, require_json=True)
    return folder, cfg


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_llm_config(cfg: dict, where: str) -> dict[str, int]:
    """config.json as a causal LM of the Llama family: a known model_type, every size present, bounded and
    consistent, and the fields transformers would otherwise fail on deep inside construction. Returns the
    sizes (``validate_sizes``)."""
    model_type = cfg.get("model_type")
    if not isinstance(model_type, str) or model_type not in LLM_MODEL_TYPES:
        raise CheckpointError(f"{where}: model_type {_short(model_type)} is not a causal LM this product loads "
                              f"({', '.join(LLM_MODEL_TYPES)})")
    architectures = cfg.get("architectures")
    if architectures is not None and (not isinstance(architectures, list) or
                                      not all(a in LLM_MODEL_TYPES[model_type] for a in architectures)):
        raise CheckpointError(f"{where}: architectures is {_short(architectures)}; a {model_type} causal LM is "
                              f"{', '.join(LLM_MODEL_TYPES[model_type])}")
    sizes = validate_sizes(cfg, where)
    missing = [key for key in REQUIRED_SIZES if key not in sizes]
    if missing:  # transformers would fill in its own defaults: a 7-billion-parameter Llama
        raise CheckpointError(f"{where} has no {missing[0]}; a causal LM's config names every size")
    heads = sizes["num_attention_heads"]
    kv_heads = sizes.setdefault("num_key_value_heads", heads)
    if heads % kv_heads:
        raise CheckpointError(f"{where}: num_key_value_heads {kv_heads} does not divide num_attention_heads {heads}")
    if "head_dim" not in sizes and sizes["hidden_size"] % heads:
        raise CheckpointError(f"{where}: hidden_size {sizes['hidden_size']} is not a multiple of num_attention_heads "
                              f"{heads} (and no head_dim is given)")
    _check_fields(cfg, where, sizes["vocab_size"])
    return sizes


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_fields(cfg: dict, where: str, vocab: int) -> None:
    from transformers.activations import ACT2FN

    act = cfg.get("hidden_act", "silu")
    if not isinstance(act, str) or act not in ACT2FN:
        raise CheckpointError(f"{where}: hidden_act is {_short(act)}; it must be an activation transformers knows "
                              "(silu, gelu, relu, ...)")
    for key, high in (("rms_norm_eps", 1.0), ("rope_theta", 1e12)):
        value = cfg.get(key)
        if value is not None and not (_is_number(value) and 0 < value < high):
            raise CheckpointError(f"{where}: {key} is {_short(value)}; it must be a number above 0 and below {high:g}")
    for key in ("tie_word_embeddings", "attention_bias", "mlp_bias"):
        if key in cfg and not isinstance(cfg[key], bool):
            raise CheckpointError(f"{where}: {key} is {_short(cfg[key])}; it must be true or false")
    for key in ("rope_scaling", "rope_parameters"):
        if cfg.get(key) is not None and not isinstance(cfg[key], dict):
            raise CheckpointError(f"{where}: {key} is {_short(cfg[key])}; it must be an object or null")
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = cfg.get(key)
        ids = value if isinstance(value, list) else [] if value is None else [value]
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab for i in ids):
            raise CheckpointError(f"{where}: {key} is {_short(value)}; the vocabulary has {vocab:,} tokens")


def expected_tensors(cfg: dict, sizes: dict) -> tuple[dict, dict]:
    """({name: shape} every tensor the config's model has, {name: shape} those it may also hold): the
    transformers names of a Llama-family causal LM."""
    hidden, layers, vocab = sizes["hidden_size"], sizes["num_hidden_layers"], sizes["vocab_size"]
    ffn, heads, kv_heads = sizes["intermediate_size"], sizes["num_attention_heads"], sizes["num_key_value_heads"]
    head_dim = sizes.get("head_dim") or hidden // heads
    model_type = cfg["model_type"]
    qkv_bias = model_type == "qwen2" or (model_type == "llama" and cfg.get("attention_bias") is True)
    o_bias = model_type == "llama" and cfg.get("attention_bias") is True
    mlp_bias = model_type == "llama" and cfg.get("mlp_bias") is True
    required = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    optional = {}
    (optional if cfg.get("tie_word_embeddings") is True else required)["lm_head.weight"] = (vocab, hidden)
    linears = {"self_attn.q_proj": (heads * head_dim, hidden, qkv_bias),
               "self_attn.k_proj": (kv_heads * head_dim, hidden, qkv_bias),
               "self_attn.v_proj": (kv_heads * head_dim, hidden, qkv_bias),
               "self_attn.o_proj": (hidden, heads * head_dim, o_bias),
               "mlp.gate_proj": (ffn, hidden, mlp_bias), "mlp.up_proj": (ffn, hidden, mlp_bias),
               "mlp.down_proj": (hidden, ffn, mlp_bias)}
    for layer in range(layers):
        prefix = f"model.layers.{layer}."
        required[prefix + "input_layernorm.weight"] = (hidden,)
        required[prefix + "post_attention_layernorm.weight"] = (hidden,)
        for name, (rows, cols, bias) in linears.items():
            required[f"{prefix}{name}.weight"] = (rows, cols)
            if bias:
                required[f"{prefix}{name}.bias"] = (rows,)
        optional[prefix + "self_attn.rotary_emb.inv_freq"] = (head_dim // 2,)  # older checkpoints kept it
    return required, optional


def check_sizes(folder: Path, cfg: dict) -> None:
    """Before any module is built: config.json's sizes (whole, positive, bounded), an arithmetic estimate
    under GEMINI_MAX_PARAMS, and the safetensors headers (header only) counted and compared with them: every
    tensor the config's model has is there with its shape and a float type, and no other (weights that do
    not match their config would be initialised at random, or not used)."""
    where = f"{folder / 'config.json'}"
    sizes = check_llm_config(cfg, where)
    check_estimate(sizes, where, gated_ffn=True)
    entries = {}
    for weights in sorted(folder.glob("*.safetensors")):
        for name, entry in header_entries(weights).items():
            if name in entries:
                raise CheckpointError(f"{name} appears in two .safetensors files in {folder}")
            entries[name] = entry
    shapes = {name: shape for name, (_dtype, shape) in entries.items()}
    what = f"the .safetensors files in {folder}"
    check_header_params(shapes, what)
    check_config_fits(sizes, shapes, where, "the .safetensors weights")
    required, optional = expected_tensors(cfg, sizes)
    described = f"the {sizes['num_hidden_layers']}-layer {cfg['model_type']} config.json"
    missing = [name for name in required if name not in entries]
    if missing:
        more = f" (and {len(missing) - 1:,} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{what} lack {missing[0]}{more}, which {described} needs; weights that do not match "
                              "their config are refused, never initialised at random")
    for name in entries:
        if name not in required and name not in optional:
            raise CheckpointError(f"{what} hold {_short(name)}, which {described} does not have")
    for name in [n for n in (*required, *optional) if n in entries]:  # in the model's order
        (dtype, shape), expected = entries[name], required.get(name, optional.get(name))
        if shape != expected:
            raise CheckpointError(f"{name} is {list(shape)} in {what} but {list(expected)} by its config.json")
        if dtype not in FLOAT_DTYPES and not name.endswith("inv_freq"):
            raise CheckpointError(f"{name} is stored as {dtype} in {what}; only float weights "
                                  f"({', '.join(FLOAT_DTYPES)}) are loaded")
