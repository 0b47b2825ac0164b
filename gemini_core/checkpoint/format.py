"""The export format: file names, the recipe and its checksums, safe JSON / bytes writing.

An export is a directory (and, for downloads, a zip of it)::

    model.safetensors   exactly ``CompressedModel.storage()``: packed codes, scales, sparse masks
    recipe.json         config, scenario + options + architecture, train settings, baseline key,
                        data fingerprint, versions, the measured record, the pruning history,
                        and the SHA-256 of every other file
    README.md           a model card: what was done, the figures, how to load it
    tokenizer/          (text models) the tokenizer the inputs were made with
    hf/                 (--format hf) a plain transformers ``save_pretrained`` folder, dequantized
    onnx/               (--format onnx) ``model.onnx`` of the dequantized float model (and int8)
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import stat
import sys
import warnings
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Iterable

import torch

from gemini_core.checkpoint.schema import validate_recipe
from gemini_core.errors import CheckpointError, GeminiError
from gemini_core.version import package_version

FORMAT = "gemini-compressed"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
RECIPE_FILE = "recipe.json"
MAX_UNZIPPED_BYTES = 8 * 1024 ** 3  # what a zipped export may unpack to (GEMINI_MAX_EXPORT_BYTES)
README_FILE = "README.md"
MAX_RECIPE_BYTES = 64 * 1024 ** 2
# gemini: the compressed safetensors (always); hf: a plain transformers folder; onnx: the float graph;
# onnx-compressed: int8 QDQ (8-bit points) or MatMulNBits (4-bit points); openvino: IR with compressed
# weights (8 or 4 bits); standalone: preprocessing + predict.py beside the ONNX file (onnxruntime + numpy only).
FORMATS = ("gemini", "hf", "onnx", "onnx-compressed", "openvino", "standalone")
# Files that unpickle on load: an export never contains one and ``load`` never opens one.
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".joblib")
ONNX_CHECK_BATCH = 32


def parse_formats(formats: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"gemini,onnx"`` or a list -> a tuple of known formats (``gemini`` always included)."""
    if formats is None:
        return ("gemini",)
    items = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    items = [f for f in items if f]
    unknown = [f for f in items if f not in FORMATS]
    if unknown:
        raise GeminiError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(["gemini", *items]))


def versions() -> dict:
    """Versions of everything that decides how the export was made."""
    out = {"python": platform.python_version(), "torch": torch.__version__, "gemini": package_version()}
    for name in ("transformers", "torch-pruning", "safetensors", "numpy", "onnx", "onnxruntime"):
        out[name] = _dist_version(name)
    return out


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _jsonable(value):
    """Plain JSON values (tuples -> lists, paths -> str, numpy/torch scalars -> numbers)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in (sorted(value) if isinstance(value, (set, frozenset)) else value)]
    if isinstance(value, Path) or hasattr(value, "__fspath__"):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(_jsonable(data), handle, indent=1, sort_keys=False)
        handle.write("\n")


def _write_bytes(path: Path, blob: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(blob)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def _quiet():
    """Silence exporter chatter (warnings, log lines, transformers progress bars) around ONNX / HF calls."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), _quiet_transformers():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


@contextlib.contextmanager
def _quiet_transformers():
    if "transformers" not in sys.modules:  # not in use: do not pay for importing it
        yield
        return
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _relative_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _read_recipe(root: Path) -> dict:
    recipe_path = root / RECIPE_FILE
    try:
        st = os.lstat(recipe_path)
    except FileNotFoundError:
        pickles = sorted(p.name for p in root.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES) if root.is_dir() else []
        if pickles:
            raise CheckpointError(f"{root} has no recipe.json, only {', '.join(pickles)}: pickle files are never "
                                  "loaded (they can run code). Export the model with gemini first") from None
        raise CheckpointError(f"{root} is not a gemini export: recipe.json is missing") from None
    except NotADirectoryError:
        raise CheckpointError(f"{root} is not a gemini export folder") from None
    if stat.S_ISLNK(st.st_mode):
        raise CheckpointError("recipe.json is a symbolic link; an export holds no links and gemini never follows one")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError("recipe.json is not a regular file")
    if st.st_size > MAX_RECIPE_BYTES:  # from stat, before a byte is read
        raise CheckpointError(f"recipe.json is {st.st_size:,} bytes, above the limit of {MAX_RECIPE_BYTES:,}")
    try:
        recipe = json.loads(read_regular(recipe_path, MAX_RECIPE_BYTES).decode("utf-8"))
    except RecursionError:
        raise CheckpointError(f"{recipe_path.name} is nested too deeply to be a recipe") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{recipe_path.name} is not valid JSON: {exc}") from None
    if not isinstance(recipe, dict) or recipe.get("format") != FORMAT:
        raise CheckpointError(f"{recipe_path.name} is not a gemini export recipe (format {recipe.get('format')!r})"
                              if isinstance(recipe, dict) and isinstance(recipe.get("format"), str)
                              and len(recipe["format"]) < 100 and recipe["format"].isprintable()
                              else f"{recipe_path.name} is not a gemini export recipe")
    validate_recipe(recipe)
    return recipe


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, opened without following a link (and without
    blocking on a pipe): a file of an export, already checked by ``checkpoint.reader``."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            raise CheckpointError(f"{path.name} is not a regular file of at most {limit:,} bytes")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise CheckpointError(f"{path.name} grew above {limit:,} bytes while it was read")
    return data


def read_recipe(root: Path) -> dict:
    """The export's recipe, checked against the schema (files not yet verified: ``checkpoint.reader.open_export``
    checks the folder and every file)."""
    return _read_recipe(Path(root))


def _safe_member(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith(("/", "\\")) and ".." not in parts and ":" not in parts[0]
