"""Exports: a compressed checkpoint that reloads, runs anywhere and proves its numbers.

An export is a directory (and, for downloads, a zip of it)::

    model.safetensors   exactly ``CompressedModel.storage()``: packed codes, scales, sparse masks
    recipe.json         config, scenario + options + architecture, train settings, baseline key,
                        data fingerprint, versions, the measured record, the pruning history,
                        and the SHA-256 of every other file
    README.md           a model card: what was done, the figures, how to load it
    tokenizer/          (text models) the tokenizer the inputs were made with
    hf/                 (--format hf) a plain transformers ``save_pretrained`` folder, dequantized
    onnx/               (--format onnx) ``model.onnx`` of the dequantized float model (and int8)

``load(path)`` only runs safe loaders (safetensors, JSON; never pickle, never remote code) and
checks every file's SHA-256 before reading it. It rebuilds the architecture from the recipe,
replays torch-pruning's history, decodes the weights and builds the same kernels the sweep
measured, so ``evaluate_export`` reproduces the recorded accuracy exactly.
"""
from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import errno
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

import torch
from torch import nn

from gemini_core.config import CompressionConfig
from gemini_core.errors import CheckpointError, GeminiError
from gemini_core.scenarios.data_io import env_limit

FORMAT = "gemini-compressed"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
RECIPE_FILE = "recipe.json"
MAX_UNZIPPED_BYTES = 8 * 1024 ** 3  # what a zipped export may unpack to (GEMINI_MAX_EXPORT_BYTES)
README_FILE = "README.md"
FORMATS = ("gemini", "hf", "onnx")
# Files that unpickle on load: an export never contains one and ``load`` never opens one.
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".joblib")
ONNX_CHECK_BATCH = 32
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

ProgressFn = Callable[[str], None]


# -- small helpers --------------------------------------------------------------------------------
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
    import platform

    import gemini_core

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "gemini": getattr(gemini_core, "__version__", None) or _dist_version("gemini-compression-studio")
           or _git_commit()}
    for name in ("transformers", "torch-pruning", "safetensors", "numpy", "onnx", "onnxruntime"):
        out[name] = _dist_version(name)
    return out


def _git_commit() -> str | None:
    """``git:<sha>`` of the checkout gemini_core runs from, when it is one (no version is packaged yet)."""
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return f"git:{sha.stdout.strip()}" if sha.returncode == 0 and sha.stdout.strip() else None


def _dist_version(name: str) -> str | None:
    from importlib import metadata

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
    import sys

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


# -- inputs and architecture ----------------------------------------------------------------------
def input_spec(scenario) -> dict:
    """Name -> per-example shape and dtype of the model's inputs (from one test example)."""
    example = scenario.example_inputs(1)
    return {name: {"shape": list(t.shape[1:]), "dtype": str(t.dtype).replace("torch.", "")}
            for name, t in example.items()}


def synthetic_inputs(recipe: dict, batch_size: int = 1) -> dict[str, torch.Tensor]:
    """Inputs of the right shapes with neutral values (zeros; ones for attention masks)."""
    spec = recipe.get("inputs") or _inputs_from_arch(recipe["scenario"]["arch"])
    out = {}
    for name, item in spec.items():
        dtype = getattr(torch, item["dtype"])
        shape = (batch_size, *item["shape"])
        out[name] = torch.ones(shape, dtype=dtype) if "mask" in name else torch.zeros(shape, dtype=dtype)
    return out


def _inputs_from_arch(arch: dict) -> dict:
    kind = arch.get("model")
    if kind == "SmallCNN":
        return {"x": {"shape": [arch["in_channels"], arch["height"], arch["width"]], "dtype": "float32"}}
    if kind == "MLP":
        return {"x": {"shape": [arch["in_features"]], "dtype": "float32"}}
    if kind == "hf":
        length = int(arch.get("max_length", 64))
        return {"input_ids": {"shape": [length], "dtype": "int64"},
                "attention_mask": {"shape": [length], "dtype": "int64"}}
    raise CheckpointError(f"cannot make example inputs for architecture {kind!r}")


def build_architecture(arch: dict) -> nn.Module:
    """The unpruned architecture with fresh weights, from ``scenario.arch()`` alone (no data, no files)."""
    from gemini_core.scenarios.models import MLP, SmallCNN

    kind = arch.get("model")
    try:
        if kind == "SmallCNN":
            return SmallCNN(int(arch["in_channels"]), int(arch["height"]), int(arch["width"]),
                            int(arch["num_classes"]), width_mult=int(arch.get("width_mult", 32))).eval()
        if kind == "MLP":
            return MLP(int(arch["in_features"]), int(arch["num_classes"]), hidden=int(arch.get("hidden", 128))).eval()
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"the recipe's architecture record is incomplete: {exc!r}") from None
    if kind == "hf":
        from gemini_core.scenarios.text import build_from_arch

        return build_from_arch(arch).eval()
    raise CheckpointError(f"unknown architecture {kind!r} in the recipe; this version of gemini cannot rebuild it")


def _after_prune(arch: dict, model: nn.Module) -> None:
    """What the scenario's ``PruneSpec.after_prune`` did after pruning (BERT attention bookkeeping)."""
    if arch.get("model") == "hf":
        from gemini_core.scenarios.text import fix_attention_heads

        fix_attention_heads(model)


def replay_pruning(model: nn.Module, history: list, example_inputs: dict[str, torch.Tensor]) -> None:
    """Prune ``model`` in place exactly as torch-pruning recorded it."""
    import torch_pruning as tp

    history = [(str(name), bool(out), [int(i) for i in idx]) for name, out, idx in history]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
        try:
            graph.load_pruning_history(history)
        except (AttributeError, KeyError, IndexError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"the pruning history does not fit the architecture: {exc}") from None


# -- writing ----------------------------------------------------------------------------------------
def _scenario_options(scenario) -> dict:
    """``scenario.options`` as JSON, with data paths made absolute so ``evaluate`` finds them elsewhere."""
    out = {}
    for key, value in (getattr(scenario, "options", None) or {}).items():
        if value is None:
            continue
        if key in ("data", "test_data"):
            path = Path(value).expanduser()
            value = str(path.resolve()) if path.exists() else str(value)
        out[key] = _jsonable(value)
    return out


def _pruning_record(compressed) -> dict:
    p = compressed.pruning
    return {"history": _jsonable(p.history or []), "achieved_ratio": p.achieved_ratio,
            "params_before": p.params_before, "params_after": p.params_after,
            "finetune_loss": p.finetune_loss, "notes": list(p.notes)}


def _sanitize_record(record: dict | None) -> dict | None:
    if record is None:
        return None
    drop = {"traceback"}
    return _jsonable({k: v for k, v in record.items() if k not in drop})


def _check_destination(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise GeminiError(f"export destination {out_dir} is a file; give a folder path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise GeminiError(f"export destination {out_dir} exists and is not empty; choose another folder "
                          "or pass overwrite=True (--overwrite)")
    if not out_dir.parent.exists():
        raise GeminiError(f"the folder {out_dir.parent} for the export does not exist")


def _publish(tmp: Path, out_dir: Path) -> None:
    """Move the finished temporary folder into place; an old export is replaced only once the new one is whole."""
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old / "x")
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            os.replace(old / "x", out_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)


def export_compressed(compressed, scenario, baseline, out_dir, record: dict | None = None,
                      formats=("gemini",), overwrite: bool = False, *, onnx_int8: bool = False,
                      measure: bool = True, make_zip: bool = False, extra: dict | None = None,
                      progress: ProgressFn | None = None) -> Path:
    """Write ``compressed`` as an export folder at ``out_dir`` (atomically) and return its path.

    ``record``: the figures measured for this point (a sweep record). Without one, the point is
    measured now (``measure_point``) or, with ``measure=False``, only its test accuracy.
    ``formats``: ``gemini`` (always), ``hf`` (a plain transformers folder; BERT-family models with
    the same FFN width in every layer), ``onnx``. ``make_zip`` also writes ``<out_dir>.zip``.
    Nothing is left behind if writing fails; an existing non-empty folder needs ``overwrite``.
    """
    from gemini_core.measure import classification_metrics, measure_point

    say = progress or (lambda message: None)
    formats = parse_formats(formats)
    out_dir = Path(out_dir).expanduser().resolve()
    _check_destination(out_dir, overwrite)
    arch = scenario.arch()
    if "hf" in formats and arch.get("model") != "hf":
        raise GeminiError(f"--format hf is for Hugging Face text models; this scenario's model is "
                          f"{arch.get('model')!r}. Use the gemini or onnx format")
    if record is None:
        if measure:
            say("measuring the point")
            record = measure_point(compressed, scenario)
            record["measured_at"] = "export"
        else:
            record = {"config": compressed.config.to_dict(), "label": compressed.config.label(),
                      "backend": compressed.backend, "measured_at": "export",
                      **classification_metrics(compressed.model, scenario.splits.test, compressed.device)}
    record = _sanitize_record(record)
    if record.get("config") and CompressionConfig.from_dict(record["config"]).key() != compressed.config.key():
        raise GeminiError("the record given to export_compressed was measured for another config")

    blob = compressed.storage()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; an export is an ordinary folder
        say("writing model.safetensors")
        _write_bytes(tmp / MODEL_FILE, blob)
        record.setdefault("size_bytes", len(blob))
        recipe = _recipe(compressed, scenario, baseline, record, arch, len(blob), formats)
        if extra:
            recipe.update(_jsonable(extra))
        tokenizer = getattr(scenario, "tokenizer", None)
        if callable(tokenizer):
            with _quiet():
                tokenizer().save_pretrained(str(tmp / "tokenizer"))
        if "hf" in formats:
            say("writing the transformers folder (hf/)")
            recipe["hf"] = write_hf(compressed.stored_model, tmp / "hf", scenario)
        if "onnx" in formats:
            say("exporting ONNX")
            recipe["onnx"] = write_onnx(compressed.stored_model, tmp / "onnx", scenario, arch, int8=onnx_int8)
        files = sorted(set(_relative_files(tmp)) | {README_FILE, RECIPE_FILE})
        (tmp / README_FILE).write_text(model_card(recipe, files), encoding="utf-8")
        recipe["files"] = {rel: {"sha256": sha256_file(tmp / rel), "bytes": (tmp / rel).stat().st_size}
                           for rel in _relative_files(tmp) if rel != RECIPE_FILE}
        _write_json(tmp / RECIPE_FILE, recipe)
        _check_destination(out_dir, overwrite)  # someone may have written there meanwhile
        _publish(tmp, out_dir)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, GeminiError):
            reason = "no space left on the disk" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
            raise GeminiError(f"could not write the export to {out_dir}: {reason}; nothing was written") from exc
        raise
    if make_zip:
        zip_path = out_dir.with_name(out_dir.name + ".zip")
        tmp_zip = zip_path.with_name(f".{zip_path.name}.tmp-{os.getpid()}")
        try:
            _write_bytes(tmp_zip, zip_export(out_dir))
            os.replace(tmp_zip, zip_path)
        finally:
            tmp_zip.unlink(missing_ok=True)
    return out_dir


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _relative_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _recipe(compressed, scenario, baseline, record: dict, arch: dict, size_bytes: int, formats) -> dict:
    from gemini_core.device import device_info

    splits = scenario.splits
    baseline_info = None
    if baseline is not None:
        baseline_info = {"key": baseline.key, "train_settings": baseline.settings.to_dict(),
                         "test_accuracy": baseline.test_accuracy}
        if getattr(baseline, "adaptive", None):
            baseline_info["adaptive"] = baseline.adaptive
    fp32 = _fp32_size(getattr(baseline, "model", None))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "formats": list(formats),
        "config": compressed.config.to_dict(),
        "label": compressed.config.label(),
        "scenario": {"name": scenario.name, "options": _scenario_options(scenario), "arch": _jsonable(arch),
                     "data_fingerprint": scenario.fingerprint(), "classes": list(splits.class_names),
                     "test_examples": len(splits.test), "description": getattr(scenario, "description", "")},
        "inputs": input_spec(scenario),
        "baseline": baseline_info,
        "train_settings": (baseline.settings.to_dict() if baseline is not None
                           else scenario.default_train.to_dict()),
        "versions": versions(),
        "exported_on": {k: v for k, v in device_info("cpu").items() if k in ("device", "threads", "torch")},
        "record": record,
        "size_bytes": size_bytes,
        "ideal_size_bytes": compressed.ideal_size_bytes(),
        "baseline_fp32_size_bytes": fp32,
        "execution": {"backend": compressed.backend, "layer_backends": dict(compressed.layer_backends),
                      "device": str(compressed.device)},
        "sparse_names": sorted(compressed.sparse_names),
        # Bits of every quantizable layer as stored (32 = float); per-layer configs differ by layer.
        "layer_bits": compressed.layer_bits(),
        "pruning": _pruning_record(compressed),
        # A baseline pruned while training (adaptive.py): replayed before the point's own history.
        "baseline_pruning_history": _jsonable(getattr(baseline, "pruning_history", None) or []),
    }


def _fp32_size(model: nn.Module | None) -> int | None:
    if model is None:
        return None
    return int(sum(t.numel() * 4 if t.is_floating_point() else t.numel() * t.element_size()
                   for t in model.state_dict().values()))


# -- hf/ ---------------------------------------------------------------------------------------
def _hf_module(model: nn.Module) -> nn.Module:
    hf = getattr(model, "hf", None)
    if hf is None or not hasattr(hf, "config"):
        raise GeminiError("--format hf needs a transformers model (the text scenario's HFClassifier)")
    return hf


def hf_state_and_config(stored_model: nn.Module):
    """A stock-config state dict and config for a head/FFN-pruned BERT-family model.

    A stock BERT config fixes the head size to hidden / heads, so removed heads cannot be left
    out: they come back as all-zero heads (zero query, key, value and zero output columns),
    which add exactly nothing; the FFN width, the same in every layer, goes into the config.
    """
    from gemini_core.scenarios.text import self_attention_modules

    hf = _hf_module(stored_model)
    config = copy.deepcopy(hf.config)
    names = {id(m): n for n, m in hf.named_modules()}
    state = {k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
             for k, v in hf.state_dict().items()}
    widths = {n: m.out_features for n, m in hf.named_modules()
              if isinstance(m, nn.Linear) and n.endswith("intermediate.dense")}
    if len(set(widths.values())) > 1:
        detail = ", ".join(f"{n.split('.intermediate')[0]}: {w}" for n, w in widths.items())
        raise GeminiError(f"--format hf needs the same FFN width in every layer (a stock config has one "
                          f"intermediate_size); this model's differ ({detail}). Use the gemini or onnx format")
    if widths:
        config.intermediate_size = int(next(iter(widths.values())))
    embeddings = hf.get_input_embeddings()
    if embeddings is not None and embeddings.embedding_dim != config.hidden_size:
        raise GeminiError("--format hf cannot express a model whose hidden size was pruned")
    heads_kept = {}
    for attention in self_attention_modules(hf):
        name = names[id(attention)]
        head_size = attention.attention_head_size
        full = config.num_attention_heads * head_size
        kept = attention.query.out_features
        heads_kept[name] = kept // head_size
        if kept == full:
            continue
        if not name.endswith(".self"):
            raise GeminiError(f"--format hf: cannot find the output projection of {name}")
        out_name = name[: -len(".self")] + ".output.dense"
        for proj in ("query", "key", "value"):
            weight, bias = state[f"{name}.{proj}.weight"], state.get(f"{name}.{proj}.bias")
            state[f"{name}.{proj}.weight"] = torch.cat([weight, weight.new_zeros(full - kept, weight.shape[1])])
            if bias is not None:
                state[f"{name}.{proj}.bias"] = torch.cat([bias, bias.new_zeros(full - kept)])
        weight = state[f"{out_name}.weight"]
        state[f"{out_name}.weight"] = torch.cat([weight, weight.new_zeros(weight.shape[0], full - kept)], dim=1)
    return state, config, heads_kept


def write_hf(stored_model: nn.Module, folder: Path, scenario=None) -> dict:
    """``save_pretrained`` folder (fp32, dequantized) that plain transformers loads; checked by reloading."""
    from transformers import AutoModelForSequenceClassification

    state, config, heads_kept = hf_state_and_config(stored_model)
    with _quiet():
        model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=False).float().eval()
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if "position_ids" not in k]
        if missing or unexpected:
            raise GeminiError(f"--format hf: weights do not fit a stock {type(model).__name__} "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        model.save_pretrained(str(folder), safe_serialization=True)
        tokenizer = getattr(scenario, "tokenizer", None)
        if callable(tokenizer):
            tokenizer().save_pretrained(str(folder))
        check = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True,
                                                                   trust_remote_code=False).eval()
    info = {"folder": "hf", "intermediate_size": getattr(config, "intermediate_size", None),
            "num_attention_heads": config.num_attention_heads, "heads_kept": heads_kept,
            "note": "removed attention heads are stored as all-zero heads (a stock config cannot drop them)"}
    if scenario is not None:
        inputs = scenario.splits.test.first(min(ONNX_CHECK_BATCH, len(scenario.splits.test))).inputs
        with torch.no_grad():
            ours = stored_model.eval()(**inputs).float()
            theirs = check(**inputs).logits.float()
        info["max_abs_diff_vs_stored_model"] = float((ours - theirs).abs().max())
    return info


# -- onnx/ -------------------------------------------------------------------------------------
def _dynamic_shapes(example: dict[str, torch.Tensor], arch: dict) -> dict:
    from torch.export import Dim

    batch = Dim("batch")
    sequence = None
    if arch.get("model") == "hf":
        max_pos = int((arch.get("config") or {}).get("max_position_embeddings", 512))
        sequence = Dim("sequence", max=max_pos)
    shapes = {}
    for name, tensor in example.items():
        dims = {0: batch}
        if sequence is not None and tensor.dim() == 2 and not tensor.is_floating_point():
            dims[1] = sequence
        shapes[name] = dims
    return shapes


def write_onnx(stored_model: nn.Module, folder: Path, scenario, arch: dict, int8: bool = False) -> dict:
    """``onnx/model.onnx`` (dynamo exporter, dynamic batch/sequence) checked against torch in onnxruntime."""
    import numpy as np
    import onnxruntime as ort

    folder.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(stored_model).float().eval()
    test = scenario.splits.test
    example = test.first(2).inputs
    names = list(example)
    started = time.perf_counter()
    try:
        with _quiet():
            torch.onnx.export(model, (), str(folder / "model.onnx"), kwargs=example, dynamo=True,
                              dynamic_shapes=_dynamic_shapes(example, arch), input_names=names,
                              output_names=["logits"], external_data=False, verbose=False, report=False)
    except OSError:
        raise
    except Exception as exc:
        raise GeminiError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    seconds = time.perf_counter() - started
    batch = test.first(min(ONNX_CHECK_BATCH, len(test))).inputs
    with torch.no_grad():
        reference = model(**batch).float().numpy()
    info = {"file": "onnx/model.onnx", "inputs": names, "outputs": ["logits"], "export_seconds": seconds,
            "dynamic_axes": {n: ["batch"] + (["sequence"] if d.get(1) is not None else [])
                             for n, d in _dynamic_shapes(example, arch).items()},
            "check_batch": int(reference.shape[0])}
    feed = {k: v.numpy() for k, v in batch.items()}
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, feed)[0]
    info["max_abs_diff_vs_torch"] = float(np.abs(out - reference).max())
    info["argmax_agreement"] = float((out.argmax(-1) == reference.argmax(-1)).mean())
    info["onnxruntime"] = ort.__version__
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet():
            quantize_dynamic(str(folder / "model.onnx"), str(folder / "model.int8.onnx"),
                             weight_type=QuantType.QInt8)
        session8 = ort.InferenceSession(str(folder / "model.int8.onnx"), providers=["CPUExecutionProvider"])
        out8 = session8.run(None, feed)[0]
        info["int8"] = {"file": "onnx/model.int8.onnx", "max_abs_diff_vs_torch": float(np.abs(out8 - reference).max()),
                        "argmax_agreement": float((out8.argmax(-1) == reference.argmax(-1)).mean()),
                        "method": "onnxruntime.quantization.quantize_dynamic (QInt8 weights)"}
    return info


# -- the model card ----------------------------------------------------------------------------
def _fmt_bytes(n) -> str:
    if n is None:
        return "n/a"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def model_card(recipe: dict, files: list[str] | None = None) -> str:
    cfg, rec, sc = recipe["config"], recipe.get("record") or {}, recipe["scenario"]
    pruning = recipe["pruning"]
    arch = sc["arch"]
    kind = (arch.get("config") or {}).get("model_type", "transformers") + " encoder" if arch.get("model") == "hf" \
        else arch.get("model")
    lines = [f"# {sc['name']}: {recipe['label']}", "",
             f"A compressed {kind} for *{sc['name']}* "
             f"({sc.get('description') or 'classification'}), exported by Gemini Compression Studio "
             f"on {recipe['created_at']}.", "", "## What was done", ""]
    per_layer_ratio = any(o.get("prune_ratio") for o in cfg.get("layer_overrides") or [])
    if cfg["prune_method"] == "none" or not (cfg["prune_ratio"] or per_layer_ratio):
        lines.append("- Pruning: none.")
    else:
        kind = ("structured (channels / neurons / heads removed; the model is physically smaller)"
                if pruning["history"] else "unstructured (weights set to zero; stored sparse)")
        lines.append(f"- Pruning: {cfg['prune_method']} at {cfg['prune_ratio']:.0%}, {kind}; achieved "
                     f"{pruning['achieved_ratio']:.1%}" + (f", then {cfg['finetune_steps']} fine-tuning steps"
                                                           if cfg["finetune_steps"] else "") + ".")
    if cfg["bits"] <= 8:
        lines.append(f"- Quantization: {cfg['bits']}-bit weights, {cfg['granularity']} scales "
                     f"({'symmetric int8' if cfg['bits'] == 8 else 'affine, zero-point per group'}); "
                     "Linear, Conv2d and Embedding weights.")
    elif cfg["bits"] == 16:
        lines.append("- Precision: bfloat16 weights and compute.")
    else:
        lines.append("- Precision: float32.")
    if cfg.get("layer_overrides"):
        rules = "; ".join(", ".join(f"{k}={v}" for k, v in o.items()) for o in cfg["layer_overrides"])
        lines.append(f"- Per-layer settings (override the above for the layers they name): {rules}.")
    lines.append(f"- Kernels: {recipe['execution']['backend']} (execution `{cfg['execution']}`).")
    for note in pruning.get("notes") or []:
        lines.append(f"- Note: {note}")
    adaptive = (recipe.get("baseline") or {}).get("adaptive") or {}
    if recipe.get("baseline_pruning_history") or adaptive:
        lines.append(f"- Baseline: adaptive training ({adaptive.get('epochs', '?')} epochs"
                     + (f", gradual {adaptive.get('prune_method')} pruning to {adaptive.get('target_ratio', 0):.0%}"
                        f" on a {adaptive.get('schedule')} schedule" if adaptive.get("target_ratio") else "")
                     + (f", quantization-aware at {adaptive['qat_bits']} bits" if adaptive.get("qat_bits") else "")
                     + "); the ratios above are relative to that baseline.")
    lines += ["", "## Measured figures", "",
              f"Measured {'during the sweep' if rec.get('measured_at') != 'export' else 'at export'}"
              f"{' on ' + rec['device'] if rec.get('device') else ''}"
              f"{', %d threads' % rec['threads'] if rec.get('threads') else ''}, test split of "
              f"{sc['test_examples']} examples (data fingerprint `{sc['data_fingerprint']}`).", "",
              "| figure | value |", "|---|---|"]

    def row(name, value):
        lines.append(f"| {name} | {value} |")

    if "accuracy" in rec:
        row("test accuracy", f"{rec['accuracy']:.4f}")
    if "macro_f1" in rec:
        row("macro F1", f"{rec['macro_f1']:.4f}")
    base = recipe.get("baseline") or {}
    if base.get("test_accuracy") is not None:
        row("baseline test accuracy (fp32, unpruned)", f"{base['test_accuracy']:.4f}")
    row("model.safetensors", f"{_fmt_bytes(recipe['size_bytes'])} ({recipe['size_bytes']:,} bytes)")
    row("ideal size (formula: nonzero weights x bits + scales)", _fmt_bytes(recipe["ideal_size_bytes"]))
    if recipe.get("baseline_fp32_size_bytes"):
        ratio = recipe["baseline_fp32_size_bytes"] / max(recipe["size_bytes"], 1)
        row("baseline fp32 weights", f"{_fmt_bytes(recipe['baseline_fp32_size_bytes'])} ({ratio:.1f}x larger)")
    if "latency_ms_p50" in rec:
        row(f"latency p50 / p90, batch {rec.get('batch_size')}",
            f"{rec['latency_ms_p50']:.3f} / {rec['latency_ms_p90']:.3f} ms")
    if "peak_memory_bytes" in rec:
        row("peak memory (one batch)", _fmt_bytes(rec["peak_memory_bytes"]))
    if "params" in rec:
        row("parameters (nonzero)", f"{rec['params']:,} ({rec.get('nonzero_params', 0):,})")
    if "macs" in rec:
        row("MACs per example (estimate)", f"{rec['macs']:,}")
    if "onnx" in recipe:
        row("ONNX vs torch, max abs diff", f"{recipe['onnx']['max_abs_diff_vs_torch']:.2e}")
    if "hf" in recipe and "max_abs_diff_vs_stored_model" in recipe["hf"]:
        row("hf/ vs stored model, max abs diff", f"{recipe['hf']['max_abs_diff_vs_stored_model']:.2e}")
    lines += ["", "Latency and memory depend on the machine; accuracy and size do not: "
              "`python -m gemini_core evaluate <this folder>` measures them again.", "",
              "## How to load it", "", "```python", "import gemini_core",
              "model = gemini_core.load(\"<this folder>\")  # checks every file's SHA-256 first",
              "logits = model(" + ", ".join(f"{n}=..." for n in recipe["inputs"]) + ")", "```", "",
              "Inputs: " + ", ".join(f"`{n}` {v['dtype']} of shape (batch, {', '.join(map(str, v['shape']))})"
                                     for n, v in recipe["inputs"].items()) + ".",
              f"Classes, in logit order: {', '.join(map(str, sc['classes']))}."]
    if (sc["arch"].get("model") == "hf"):
        lines += ["", "Text is tokenized with the tokenizer in `tokenizer/` "
                  f"(padding to {sc['arch'].get('max_length')} tokens, truncation on)."]
    if "hf" in recipe:
        lines += ["", "Plain transformers, no gemini code (dequantized float weights):", "", "```python",
                  "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
                  "model = AutoModelForSequenceClassification.from_pretrained(\"<this folder>/hf\")",
                  "tokenizer = AutoTokenizer.from_pretrained(\"<this folder>/hf\")", "```",
                  "", f"({recipe['hf']['note']}.)"]
    if "onnx" in recipe:
        lines += ["", "ONNX Runtime (dequantized float graph, dynamic batch"
                  + (" and sequence" if sc["arch"].get("model") == "hf" else "") + "):", "", "```python",
                  "import onnxruntime as ort",
                  "session = ort.InferenceSession(\"<this folder>/onnx/model.onnx\")",
                  "logits = session.run(None, {" + ", ".join(f"\"{n}\": ..." for n in recipe["inputs"]) + "})[0]",
                  "```"]
    lines += ["", "## Files", "", "`recipe.json` holds the full recipe (config, scenario and options, "
              "architecture, training settings, versions, the pruning history) and the SHA-256 of every file "
              "below. No file here is a pickle.", ""]
    lines += [f"- `{rel}`" for rel in (files or [])]
    return "\n".join(lines) + "\n"


# -- reading ---------------------------------------------------------------------------------------
@dataclass
class LoadedExport:
    """A reloaded export: the runnable model plus everything needed to measure it."""

    model: nn.Module  # the runnable model, on the recorded kernels
    stored_model: nn.Module  # fp32 CPU module holding exactly the stored values
    quantized: dict
    config: object  # CompressionConfig
    recipe: dict
    backend: str
    layer_backends: dict
    device: torch.device
    path: Path
    sparse_names: set = field(default_factory=set)

    def as_compressed(self):
        """A ``CompressedModel`` view, so the sweep's own ``measure_point`` can measure it."""
        from gemini_core.compress import CompressedModel
        from gemini_core.techniques.prune import PruneResult

        p = self.recipe.get("pruning") or {}
        pruning = PruneResult(self.stored_model, history=p.get("history"),
                              achieved_ratio=p.get("achieved_ratio", 0.0), params_before=p.get("params_before", 0),
                              params_after=p.get("params_after", 0), finetune_loss=p.get("finetune_loss"),
                              notes=list(p.get("notes") or []))
        return CompressedModel(self.config, self.model, self.stored_model, self.quantized, pruning, self.backend,
                               self.layer_backends, self.device, set(self.sparse_names))


def _safe_member(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith(("/", "\\")) and ".." not in parts and ":" not in parts[0]


@contextlib.contextmanager
def _export_root(path):
    """The export folder for ``path`` (a folder, or a zip of one extracted to a temporary folder)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"no export at {str(path)!r}")
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise CheckpointError(f"{path.name} is a pickle file; gemini never loads pickles (they can run "
                                  "code). Give an export folder with recipe.json and model.safetensors")
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path.name} is neither an export folder nor a zip of one")
        with tempfile.TemporaryDirectory(prefix="gemini-export-") as tmp:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                if not any(PurePosixPath(n).name == RECIPE_FILE for n in names):
                    pickled = any(n.endswith(".pkl") for n in names)
                    raise CheckpointError(f"{path.name} is not a zip of a gemini export (no recipe.json)"
                                          + ("; it holds pickled data, which gemini never loads" if pickled else ""))
                for info in archive.infolist():
                    if not _safe_member(info.filename) or (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise CheckpointError(f"{path.name}: unsafe entry {info.filename!r} in the zip")
                unzipped = sum(info.file_size for info in archive.infolist())
                limit = env_limit("GEMINI_MAX_EXPORT_BYTES", MAX_UNZIPPED_BYTES)
                if unzipped > limit:  # a zip bomb from an untrusted sender must not fill the disk
                    raise CheckpointError(f"{path.name} would unpack to {unzipped:,} bytes, above the limit of "
                                          f"{limit:,} (GEMINI_MAX_EXPORT_BYTES changes it)")
                archive.extractall(tmp)
            root = Path(tmp)
            if not (root / RECIPE_FILE).exists():
                subdirs = [p for p in root.iterdir() if p.is_dir()]
                if len(subdirs) == 1 and (subdirs[0] / RECIPE_FILE).exists():
                    root = subdirs[0]
            yield root
        return
    yield path


def _read_recipe(root: Path) -> dict:
    recipe_path = root / RECIPE_FILE
    if not recipe_path.exists():
        pickles = sorted(p.name for p in root.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(f"{root} has no recipe.json, only {', '.join(pickles)}: pickle files are never "
                                  "loaded (they can run code). Export the model with gemini first")
        raise CheckpointError(f"{root} is not a gemini export: recipe.json is missing")
    try:
        recipe = json.loads(recipe_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{recipe_path} is not valid JSON: {exc}") from None
    if not isinstance(recipe, dict) or recipe.get("format") != FORMAT:
        raise CheckpointError(f"{recipe_path} is not a gemini export recipe (format {recipe.get('format')!r})"
                              if isinstance(recipe, dict) else f"{recipe_path} is not a gemini export recipe")
    if int(recipe.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"the export uses format version {recipe['format_version']}; this gemini reads up to "
                              f"{FORMAT_VERSION}: update gemini")
    for key in ("config", "scenario", "files"):
        if key not in recipe:
            raise CheckpointError(f"{recipe_path} lacks {key!r}")
    return recipe


def verify_files(root: Path, recipe: dict) -> None:
    """CheckpointError naming the first file that is missing or whose SHA-256 differs from the recipe."""
    files = recipe.get("files") or {}
    if MODEL_FILE not in files:
        raise CheckpointError(f"recipe.json lists no checksum for {MODEL_FILE}")
    for rel, info in sorted(files.items()):
        if not _safe_member(rel):
            raise CheckpointError(f"recipe.json lists an unsafe path {rel!r}")
        file = root / rel
        if not file.is_file():
            raise CheckpointError(f"{rel} is missing from the export {root}")
        if sha256_file(file) != info.get("sha256"):
            raise CheckpointError(f"checksum mismatch for {rel}: the file was changed or damaged after export")


def read_export(root: Path) -> tuple[dict, bytes]:
    """(recipe, model.safetensors bytes) after every checksum was verified."""
    recipe = _read_recipe(root)
    verify_files(root, recipe)
    return recipe, (root / MODEL_FILE).read_bytes()


def rebuild_stored_model(recipe: dict, blob: bytes) -> tuple[nn.Module, dict]:
    """The stored (fp32, dequantized) model and its quantized codes, from a verified recipe + file."""
    from gemini_core.checkpoint.codec import decode_state, from_bytes

    arch = recipe["scenario"]["arch"]
    try:
        tensors, layout, meta = from_bytes(blob)
        state, quantized = decode_state(tensors, layout)
    except Exception as exc:  # safetensors / layout errors: the file is not what the recipe says
        raise CheckpointError(f"{MODEL_FILE} cannot be decoded: {type(exc).__name__}: {exc}") from None
    _check_layer_bits(recipe, meta, quantized)
    model = build_architecture(arch)
    for history in (recipe.get("baseline_pruning_history") or [], (recipe.get("pruning") or {}).get("history") or []):
        if history:
            replay_pruning(model, history, synthetic_inputs(recipe))
            _after_prune(arch, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"the weights in {MODEL_FILE} do not fit the rebuilt architecture: "
                              f"{str(exc).splitlines()[0]}") from None
    return model.float().eval(), quantized


def _check_layer_bits(recipe: dict, meta: dict, quantized: dict) -> None:
    """A per-layer export: the bits written per layer must be those the codes hold and the recipe asks for."""
    from gemini_core.checkpoint.codec import LAYER_BITS_KEY

    if LAYER_BITS_KEY not in meta:
        return
    try:
        layer_bits = json.loads(meta[LAYER_BITS_KEY])
    except ValueError:
        raise CheckpointError(f"{MODEL_FILE}: per-layer bits are not valid JSON") from None
    for name, bits in layer_bits.items():
        q = quantized.get(f"{name}.weight")
        if (q.bits if q is not None else None) != (bits if bits <= 8 else None):
            raise CheckpointError(f"{MODEL_FILE}: layer {name} is recorded at {bits} bits but stored at "
                                  f"{q.bits if q is not None else 'float'}")
    if layer_bits != (recipe.get("layer_bits") or layer_bits):
        raise CheckpointError(f"{MODEL_FILE}: per-layer bits differ from recipe.json")


def load_export(path, device="cpu") -> LoadedExport:
    """Verify and reload an export folder (or its zip): the runnable model and its recipe."""
    from gemini_core.runtimes.torch_kernels import build_execution_model

    device = torch.device(device)
    with _export_root(path) as root:
        recipe, blob = read_export(root)
    try:
        config = CompressionConfig.from_dict(recipe["config"])
    except GeminiError as exc:
        raise CheckpointError(f"recipe.json holds an invalid config: {exc}") from None
    stored, quantized = rebuild_stored_model(recipe, blob)
    runnable, backend, layers = build_execution_model(stored, config, quantized, device)
    return LoadedExport(runnable, stored, quantized, config, recipe, backend, layers, device,
                        Path(path).expanduser().resolve(), set(recipe.get("sparse_names") or []))


def load(path, device="cpu") -> nn.Module:
    """The runnable compressed model of an export (``forward(**inputs)`` -> logits).

    Safe loaders only: JSON and safetensors, after every file's SHA-256 is checked.
    """
    loaded = load_export(path, device=device)
    model = loaded.model
    model.gemini_recipe = loaded.recipe  # plain attribute: the recipe travels with the model
    return model


def zip_export(path) -> bytes:
    """The export folder as zip bytes (one top folder, fixed timestamps: same folder, same bytes)."""
    root = Path(path).expanduser()
    if not (root / RECIPE_FILE).exists():
        raise CheckpointError(f"{root} is not a gemini export: recipe.json is missing")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rel in _relative_files(root):
            info = zipfile.ZipInfo(f"{root.name}/{rel}", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, (root / rel).read_bytes())
    return buffer.getvalue()


# -- from the store -----------------------------------------------------------------------------------
def export_point(store, point_id: int, out_dir, formats=("gemini",), overwrite: bool = False, device=None,
                 onnx_int8: bool = False, make_zip: bool = False, run_id: str | None = None,
                 progress: ProgressFn | None = None) -> Path:
    """Export a stored sweep point: rebuild its baseline, re-compress with its config, write it.

    The stored record becomes the export's record when the re-compressed model reproduces its
    accuracy and size; otherwise the point is measured again and both records are kept.
    """
    from gemini_core.compress import compress
    from gemini_core.measure import classification_metrics, measure_point
    from gemini_core.training.loop import baseline_from_description

    say = progress or (lambda message: None)
    point = store.get_point(point_id)
    if run_id is not None and point["run_id"] != run_id:
        raise GeminiError(f"point {point_id} belongs to run {point['run_id']}, not {run_id}")
    if point.get("status") != "ok":
        raise GeminiError(f"point {point_id} failed ({point.get('error') or 'no reason stored'}); "
                          "only measured points can be exported")
    run = store.get_run(point["run_id"])
    if not run.get("baseline"):
        raise GeminiError(f"run {point['run_id']} has no stored baseline description; run the sweep again")
    _check_destination(Path(out_dir).expanduser().resolve(), overwrite)
    say("loading the baseline")
    baseline = baseline_from_description(run["baseline"], device=device)
    scenario = baseline.scenario
    config = CompressionConfig.from_dict(point["config"])
    if device is None:
        recorded = str(point.get("device") or "")
        device = "cuda" if recorded.startswith("cuda") and torch.cuda.is_available() else "cpu"
    say(f"compressing: {config.label()}")
    compressed = compress(baseline.model, config, scenario, device=device)
    stored_record = {k: v for k, v in point.items() if k not in ("traceback",)}
    size_now = len(compressed.storage())
    accuracy_now = classification_metrics(compressed.model, scenario.splits.test, compressed.device)["accuracy"]
    reproduced = (size_now == stored_record.get("size_bytes") and accuracy_now == stored_record.get("accuracy"))
    extra = {"source": {"run_id": point["run_id"], "point_id": point["point_id"], "store": str(store.path),
                        "reproduced_sweep": reproduced}}
    record = stored_record
    if not reproduced:
        say("the re-compressed model differs from the stored point; measuring it again")
        record = measure_point(compressed, scenario, batch_size=int(stored_record.get("batch_size") or 32))
        record["measured_at"] = "export"
        extra["sweep_record"] = _sanitize_record(stored_record)
        extra["source"]["note"] = (f"re-compressing gave accuracy {accuracy_now:.4f} and {size_now} bytes; the "
                                   f"sweep measured {stored_record.get('accuracy')} and "
                                   f"{stored_record.get('size_bytes')} bytes. The record is the new measurement.")
    return export_compressed(compressed, scenario, baseline, out_dir, record=record, formats=formats,
                             overwrite=overwrite, onnx_int8=onnx_int8, make_zip=make_zip, extra=extra,
                             progress=progress)


# -- evaluation -----------------------------------------------------------------------------------
def scenario_for(recipe: dict, overrides: dict | None = None):
    """The recipe's scenario, rebuilt from its name and options (``overrides`` replace options)."""
    from gemini_core.scenarios import get_scenario

    options = dict(recipe["scenario"].get("options") or {})
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    options.update(given)
    try:
        return get_scenario(recipe["scenario"]["name"], **options)
    except GeminiError as exc:
        hint = "" if given or not options.get("data") else " (give the data's new place with --data)"
        raise type(exc)(f"cannot rebuild the export's scenario {recipe['scenario']['name']!r}: {exc}{hint}") from None


def evaluate_export(path, device=None, scenario=None, batch_size: int | None = None,
                    data_overrides: dict | None = None) -> dict:
    """Reload an export and measure it on the recipe's test split: a sweep-point record, plus checks.

    ``size_bytes`` is the real size of ``model.safetensors``; ``accuracy_matches_record`` says
    whether the recorded accuracy was reproduced exactly.
    """
    from gemini_core.device import pick_device
    from gemini_core.measure import measure_point

    device = torch.device(device) if device is not None else pick_device()
    loaded = load_export(path, device=device)
    recipe = loaded.recipe
    scenario = scenario or scenario_for(recipe, data_overrides)
    recorded = recipe.get("record") or {}
    batch_size = int(batch_size or recorded.get("batch_size") or 32)
    compressed = loaded.as_compressed()
    record = measure_point(compressed, scenario, batch_size=batch_size)
    reencoded = compressed.storage()
    with _export_root(path) as root:
        file_bytes = (root / MODEL_FILE).stat().st_size
        file_hash = sha256_file(root / MODEL_FILE)
    record["size_bytes"] = int(file_bytes)
    record["reencoded_identical"] = hashlib.sha256(reencoded).hexdigest() == file_hash
    fingerprint = scenario.fingerprint()
    record.update({
        "export": str(loaded.path),
        "measured_at": "evaluate",
        "data_fingerprint": fingerprint,
        "data_fingerprint_matches": fingerprint == recipe["scenario"].get("data_fingerprint"),
        "recorded": {k: recorded.get(k) for k in ("accuracy", "macro_f1", "size_bytes", "latency_ms_p50",
                                                  "device", "point_id", "run_id") if k in recorded},
        "accuracy_matches_record": ("accuracy" in recorded and record["accuracy"] == recorded["accuracy"]),
        "size_matches_record": record["size_bytes"] == recorded.get("size_bytes", recipe.get("size_bytes")),
    })
    if recipe.get("sweep_record"):  # export_point could not reproduce the sweep: its figures, for comparison
        record["recorded"]["sweep_accuracy"] = recipe["sweep_record"].get("accuracy")
        record["recorded"]["sweep_size_bytes"] = recipe["sweep_record"].get("size_bytes")
    return record
