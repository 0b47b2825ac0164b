"""Writing an export folder (atomically) from a compressed model and its measured record."""
from __future__ import annotations

import datetime as _dt
import errno
import json
from pathlib import Path

from torch import nn

from gemini_core.checkpoint import format as fmt
from gemini_core.checkpoint import reader
from gemini_core.checkpoint.archive import zip_export
from gemini_core.checkpoint.format import (
    FORMAT,
    FORMAT_VERSION,
    MODEL_FILE,
    README_FILE,
    RECIPE_FILE,
    _jsonable,
    _quiet,
    _relative_files,
    parse_formats,
    sha256_file,
    versions,
)
from gemini_core.checkpoint.hf import write_hf
from gemini_core.checkpoint.inputs import input_spec
from gemini_core.checkpoint.model_card import model_card
from gemini_core.checkpoint.onnx import write_onnx
from gemini_core.checkpoint.runtime_exports import write_onnx_int8, write_onnx_nbits, write_openvino_ir
from gemini_core.checkpoint.schema import validate_recipe
from gemini_core.checkpoint.standalone import write_standalone
from gemini_core.config import CompressionConfig
from gemini_core.device import device_info
from gemini_core.errors import CheckpointError, GeminiError
from gemini_core.fsio import explain_os_error, publish_folder, staging_folder, write_file_atomic
from gemini_core.paths import home_dir
from gemini_core.progress import ProgressFn, notify


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
    _refuse_product_folder(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise GeminiError(f"export destination {out_dir} exists and is not empty; choose another folder "
                              "or pass overwrite=True (--overwrite)")
        reason = not_our_export(out_dir)
        if reason:
            raise GeminiError(f"export destination {out_dir} is not an export written by gemini, or was changed "
                              f"since ({reason}); --overwrite replaces only an earlier export that holds nothing "
                              "but the files its recipe.json lists. Choose another folder")
    if not out_dir.parent.exists():
        raise GeminiError(f"the folder {out_dir.parent} for the export does not exist")


def not_our_export(folder: Path) -> str | None:
    """Why ``folder`` is not an export this product wrote and nobody changed since (None when it is one): read by
    the one reader of exports (its recipe, no links, exactly the files the recipe lists, each checksum), so
    --overwrite deletes only files the product wrote."""
    try:
        reader.open_export(Path(folder), only_listed=True)
    except CheckpointError as exc:
        return str(exc).rstrip(".")
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def is_our_export(folder: Path) -> bool:
    """Does ``folder`` hold an export this product wrote (see ``not_our_export``), and nothing else?"""
    return not_our_export(folder) is None


def _refuse_product_folder(out_dir: Path) -> None:
    """The home folder, any folder above it, and its own sub-folders (baselines, the store, uploads, exports
    itself) are never an export destination: replacing one would delete the user's work."""
    home = home_dir()
    if out_dir == home or out_dir in home.parents:
        raise GeminiError(f"export destination {out_dir} is the home folder {home} or holds it; exporting there "
                          "would replace the run store and the baselines. Choose a folder of its own")
    if home in out_dir.parents and out_dir.relative_to(home).parts[0] != "exports":
        raise GeminiError(f"export destination {out_dir} is inside the home folder's "
                          f"{out_dir.relative_to(home).parts[0]!r}; exports go in {home / 'exports'} or outside "
                          "the home folder")
    if out_dir == home / "exports":
        raise GeminiError(f"export destination {out_dir} is the exports folder itself; give a folder inside it")


def check_destination(out_dir, overwrite: bool) -> Path:
    """The resolved export folder; GeminiError when it cannot be written as asked."""
    out_dir = Path(out_dir).expanduser().resolve()
    _check_destination(out_dir, overwrite)
    return out_dir


def check_formats(formats, bits: int) -> None:
    """One line naming a format this point cannot be written in (before anything is measured or written)."""
    if "onnx-compressed" in formats and bits not in (8, 4):
        raise GeminiError(f"--format onnx-compressed keeps 8-bit (int8 QDQ) or 4-bit (MatMulNBits) weights; "
                          f"this point has {bits} bits. Use onnx for the float graph")
    if "openvino" in formats and bits not in (8, 4):
        raise GeminiError(f"--format openvino keeps 8- or 4-bit weights; this point has {bits} bits")
    if "standalone" in formats and not {"onnx", "onnx-compressed"} & set(formats):
        raise GeminiError("--format standalone runs an ONNX file: add onnx or onnx-compressed")


def _write_runtime_formats(tmp: Path, compressed, scenario, recipe: dict, formats, progress) -> None:
    """The formats that keep their compression in another runtime, each reloaded there and checked."""
    onnx_file = "model.onnx"
    if "onnx-compressed" in formats:
        notify(progress, "message", "writing the compressed ONNX graph")
        writer = write_onnx_int8 if compressed.config.bits == 8 else write_onnx_nbits
        recipe["onnx_compressed"] = writer(compressed, scenario, tmp / "onnx")
        onnx_file = recipe["onnx_compressed"]["file"]
    if "openvino" in formats:
        notify(progress, "message", "writing the OpenVINO IR")
        recipe["openvino"] = write_openvino_ir(compressed, scenario, tmp / "openvino")
    if "standalone" in formats:
        notify(progress, "message", "writing the standalone loader (predict.py)")
        recipe["standalone"] = write_standalone(tmp / "onnx", scenario, onnx_file=onnx_file)


def write_export(compressed, scenario, baseline, out_dir, record: dict, formats=("gemini",),
                 overwrite: bool = False, *, onnx_int8: bool = False, make_zip: bool = False,
                 extra: dict | None = None, progress: ProgressFn | None = None) -> Path:
    """Write ``compressed`` and its measured ``record`` as an export folder at ``out_dir`` (atomically).

    ``formats``: ``gemini`` (always), ``hf`` (a plain transformers folder; BERT-family models with
    the same FFN width in every layer), ``onnx``. ``make_zip`` also writes ``<out_dir>.zip``.
    Nothing is left behind if writing fails; an existing non-empty folder needs ``overwrite``.
    """
    formats = parse_formats(formats)
    out_dir = check_destination(out_dir, overwrite)
    arch = scenario.arch()
    if "hf" in formats and arch.get("model") != "hf":
        raise GeminiError(f"--format hf is for Hugging Face text models; this scenario's model is "
                          f"{arch.get('model')!r}. Use the gemini or onnx format")
    check_formats(formats, compressed.config.bits)
    record = _sanitize_record(record)
    if record.get("config") and CompressionConfig.from_dict(record["config"]).key() != compressed.config.key():
        raise GeminiError("the record given to export_compressed was measured for another config")
    blob = compressed.storage()
    try:
        with staging_folder(out_dir) as tmp:
            _write_folder(tmp, compressed, scenario, baseline, record, arch, blob, formats, onnx_int8, extra,
                          progress)
            _check_destination(out_dir, overwrite)  # someone may have written there meanwhile
            publish_folder(tmp, out_dir, replace=True)
    except OSError as exc:
        explained = explain_os_error(exc, f"saving the export to {out_dir}")
        if explained:
            raise GeminiError(f"{explained}; nothing was written") from None
        reason = "no space left on the disk" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
        raise GeminiError(f"could not write the export to {out_dir}: {reason}; nothing was written") from None
    if make_zip:
        try:
            write_file_atomic(out_dir.with_name(out_dir.name + ".zip"), zip_export(out_dir))
        except OSError as exc:
            raise GeminiError(explain_os_error(exc, f"saving {out_dir.name}.zip")
                              or f"could not write {out_dir.name}.zip: {exc.strerror or exc}") from None
    return out_dir


def _write_folder(tmp: Path, compressed, scenario, baseline, record, arch, blob, formats, onnx_int8, extra,
                  progress) -> None:
    notify(progress, "message", "writing model.safetensors")
    fmt._write_bytes(tmp / MODEL_FILE, blob)
    record.setdefault("size_bytes", len(blob))
    recipe = _recipe(compressed, scenario, baseline, record, arch, len(blob), formats)
    if extra:
        recipe.update(_jsonable(extra))
    tokenizer = getattr(scenario, "tokenizer", None)
    if callable(tokenizer):
        with _quiet():
            tokenizer().save_pretrained(str(tmp / "tokenizer"))
    if "hf" in formats:
        notify(progress, "message", "writing the transformers folder (hf/)")
        recipe["hf"] = write_hf(compressed.stored_model, tmp / "hf", scenario)
    if "onnx" in formats:
        notify(progress, "message", "exporting ONNX")
        recipe["onnx"] = write_onnx(compressed.stored_model, tmp / "onnx", scenario, arch, int8=onnx_int8)
    _write_runtime_formats(tmp, compressed, scenario, recipe, formats, progress)
    files = sorted(set(_relative_files(tmp)) | {README_FILE, RECIPE_FILE})
    (tmp / README_FILE).write_text(model_card(recipe, files), encoding="utf-8")
    recipe["files"] = {rel: {"sha256": sha256_file(tmp / rel), "bytes": (tmp / rel).stat().st_size}
                       for rel in _relative_files(tmp) if rel != RECIPE_FILE}
    fmt._write_json(tmp / RECIPE_FILE, recipe)
    validate_recipe(json.loads((tmp / RECIPE_FILE).read_text(encoding="utf-8")))  # what every reader checks


def _recipe(compressed, scenario, baseline, record: dict, arch: dict, size_bytes: int, formats) -> dict:
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
