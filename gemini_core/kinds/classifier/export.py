"""The classifier's export: a stored sweep point or a compressed model to an export folder, and its
evaluation (an export reloaded and measured again on the recipe's test split). ``workflows.export`` is the
door every kind shares; it checks the point or unpacks the archive and hands it here.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from gemini_core.checkpoint import reader, write
from gemini_core.checkpoint.format import MODEL_FILE, sha256_file
from gemini_core.checkpoint.load import load_verified
from gemini_core.compress import compress
from gemini_core.config import CompressionConfig
from gemini_core.device import compute_threads, condition_warnings, pick_device
from gemini_core.errors import CheckpointError, GeminiError
from gemini_core.measure import classification_metrics, measure_point
from gemini_core.progress import ProgressFn, notify
from gemini_core.scenarios import get_scenario
from gemini_core.scenarios.registry import scenario_entry
from gemini_core.workflows.baselines import baseline_from_description


def export_compressed(compressed, scenario, baseline, out_dir, record: dict | None = None,
                      formats=("gemini",), overwrite: bool = False, *, onnx_int8: bool = False,
                      measure: bool = True, make_zip: bool = False, extra: dict | None = None,
                      progress: ProgressFn | None = None) -> Path:
    """Write ``compressed`` as an export folder at ``out_dir`` (atomically) and return its path.

    ``record``: the figures measured for this point (a sweep record). Without one, the point is
    measured now (``measure_point``) or, with ``measure=False``, only its test accuracy.
    See ``checkpoint.write.write_export`` for formats, zip and overwrite.
    """
    write.check_destination(out_dir, overwrite)  # fail before measuring
    write.check_formats(write.parse_formats(formats), compressed.config.bits)
    if record is None:
        if measure:
            notify(progress, "message", "measuring the point")
            record = measure_point(compressed, scenario)
            record["measured_at"] = "export"
        else:
            record = {"config": compressed.config.to_dict(), "label": compressed.config.label(),
                      "backend": compressed.backend, "measured_at": "export",
                      **classification_metrics(compressed.model, scenario.splits.test, compressed.device)}
    return write.write_export(compressed, scenario, baseline, out_dir, record, formats, overwrite,
                              onnx_int8=onnx_int8, make_zip=make_zip, extra=extra, progress=progress)


def export_point(store, point: dict, out_dir, formats=("gemini",), overwrite: bool = False, device=None,
                 onnx_int8: bool = False, make_zip: bool = False, progress: ProgressFn | None = None,
                 **_other_kinds_options) -> Path:
    """Export a stored sweep point (checked by ``workflows.export``): rebuild its baseline, re-compress with its
    config, write it.

    The stored record becomes the export's record when the re-compressed model reproduces its
    accuracy and size; otherwise the point is measured again and both records are kept.
    """
    run = store.get_run(point["run_id"])
    if not run.get("baseline"):
        raise GeminiError(f"run {point['run_id']} has no stored baseline description; run the sweep again")
    write.check_destination(out_dir, overwrite)
    notify(progress, "message", "loading the baseline")
    baseline = baseline_from_description(run["baseline"], device=device)
    scenario = baseline.scenario
    config = CompressionConfig.from_dict(point["config"])
    if device is None:
        recorded = str(point.get("device") or "")
        device = "cuda" if recorded.startswith("cuda") and torch.cuda.is_available() else "cpu"
    notify(progress, "message", f"compressing: {config.label()}")
    compressed = compress(baseline.model, config, scenario, device=device)
    stored_record = {k: v for k, v in point.items() if k not in ("traceback",)}
    size_now = len(compressed.storage())
    accuracy_now = classification_metrics(compressed.model, scenario.splits.test, compressed.device)["accuracy"]
    reproduced = (size_now == stored_record.get("size_bytes") and accuracy_now == stored_record.get("accuracy"))
    # the store's file name, not its absolute local path: an export is shipped to other machines
    extra = {"source": {"run_id": point["run_id"], "point_id": point["point_id"], "store": store.path.name,
                        "reproduced_sweep": reproduced}}
    record = stored_record
    if not reproduced:
        notify(progress, "message", "the re-compressed model differs from the stored point; measuring it again")
        record = measure_point(compressed, scenario, batch_size=int(stored_record.get("batch_size") or 32))
        record["measured_at"] = "export"
        extra["sweep_record"] = write._sanitize_record(stored_record)
        extra["source"]["note"] = (f"re-compressing gave accuracy {accuracy_now:.4f} and {size_now} bytes; the "
                                   f"sweep measured {stored_record.get('accuracy')} and "
                                   f"{stored_record.get('size_bytes')} bytes. The record is the new measurement.")
    return export_compressed(compressed, scenario, baseline, out_dir, record=record, formats=formats,
                             overwrite=overwrite, onnx_int8=onnx_int8, make_zip=make_zip, extra=extra,
                             progress=progress)


PATH_OPTIONS = ("data", "test_data")  # options naming files: never taken from a checkpoint
MAX_EVAL_BATCH = 4096  # a recorded batch size above this is not used to measure (it is the sender's number)


def scenario_for(recipe: dict, overrides: dict | None = None):
    """The recipe's scenario, rebuilt from its name and non-path options, with the data (and, for ``hf:``
    models, the model folder) the user names now in ``overrides``.

    A checkpoint never chooses what is opened or downloaded: the data paths and the ``hf:`` model source
    it records are ignored, so evaluating someone else's export reads only the built-in data or files the
    user gave. ``overrides``: ``data``, ``test_data``, ``model`` (None = not given).
    """
    name = recipe["scenario"]["name"]
    entry = scenario_entry(name)
    options = {k: v for k, v in (recipe["scenario"].get("options") or {}).items()
               if k not in PATH_OPTIONS and v is not None}
    given = {k: v for k, v in (overrides or {}).items() if v not in (None, "")}
    model = given.pop("model", None)
    if entry.prefix:
        if not model:
            raise CheckpointError(f"the export's model came from {name!r}; a checkpoint never chooses a folder to "
                                  "open or a model to download: give the model's folder now (--model DIR)")
        name = entry.name + str(model)
    elif model:
        raise GeminiError(f"--model is for hf: exports; this export's scenario is {name!r}")
    if entry.data_kind == "builtin":
        if given:
            raise GeminiError(f"the export's scenario {name!r} uses its built-in data; remove "
                              f"{', '.join('--' + k.replace('_', '-') for k in given)}")
    elif not given.get("data"):
        raise CheckpointError(f"the export was measured on the {name!r} scenario's own data; a checkpoint never "
                              "chooses the files it is checked on: give the test data now (--data FILE)")
    options.update(given)
    try:
        return get_scenario(name, **options)
    except GeminiError as exc:
        raise type(exc)(f"cannot rebuild the export's scenario {entry.name!r}: {exc}") from None


def evaluate_export(root: Path, path, device=None, scenario=None, batch_size: int | None = None,
                    data_overrides: dict | None = None, verified: dict | None = None,
                    **_other_kinds_options) -> dict:
    """Reload an export (unpacked at ``root`` by ``workflows.export``) and measure it on the recipe's test
    split: a sweep-point record, plus checks.

    ``size_bytes`` is the real size of ``model.safetensors``; ``accuracy_matches_record`` says
    whether the recorded accuracy was reproduced exactly. ``verified``: the recipe ``reader.open_export``
    returned for ``root`` (read again when not given).
    """
    device = pick_device(device)
    record, loaded, scenario, recorded = _evaluate_root(root, device, scenario, batch_size, data_overrides,
                                                        verified)
    recipe = loaded.recipe
    fingerprint = scenario.fingerprint()
    record.update({
        "export": str(Path(path).expanduser().resolve()), "kind": "classifier", "quality_metric": "accuracy",
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


def _evaluate_root(root: Path, device, scenario, batch_size, data_overrides, verified: dict | None = None):
    """``evaluate_export`` on an export folder already unpacked: (record, loaded, scenario, recorded)."""
    # the one reader (schema, paths, links, listed files, checksums) before the scenario and the model are built
    recipe = verified if verified is not None else reader.open_export(root)
    scenario = scenario or scenario_for(recipe, data_overrides)
    loaded = load_verified(root, recipe, device, scenario, root)  # runtime executions convert again with it
    recorded = loaded.recipe.get("record") or {}
    batch_size = int(batch_size or min(int(recorded.get("batch_size") or 32), MAX_EVAL_BATCH))
    compressed = loaded.as_compressed()
    # Latency depends on the thread count: re-measure at the one the point was recorded at.
    threads = recorded.get("threads") if device.type == "cpu" else None
    with compute_threads(int(threads) if threads else None):
        record = measure_point(compressed, scenario, batch_size=batch_size)
    record["warnings"] = condition_warnings(record, recorded if recorded.get("threads") else None)
    reencoded = compressed.storage()
    weights = reader.member(root, MODEL_FILE)
    record["size_bytes"] = int(weights.stat().st_size)
    record["reencoded_identical"] = hashlib.sha256(reencoded).hexdigest() == sha256_file(weights)
    return record, loaded, scenario, recorded


def export_summary(path: Path, recipe: dict, zip_requested: bool = False) -> dict:
    """What the export wrote, for the command line (from its recipe)."""
    record = recipe.get("record") or {}
    summary = {"export": str(path), "label": recipe["label"], "accuracy": record.get("accuracy"),
               "size_bytes": recipe["size_bytes"], "ideal_size_bytes": recipe["ideal_size_bytes"],
               "formats": recipe["formats"], "files": sorted(recipe["files"])}
    if zip_requested:
        summary["zip"] = str(path.with_name(path.name + ".zip"))
    if "onnx" in recipe:
        summary["onnx_max_abs_diff"] = recipe["onnx"]["max_abs_diff_vs_torch"]
    return summary


def evaluate_warnings(record: dict) -> list[str]:
    """What the command line warns about after evaluating an export."""
    if not record.get("data_fingerprint_matches"):
        return ["warning: the test data differs from the data the export was measured on"]
    if not record.get("accuracy_matches_record"):
        return ["warning: the accuracy differs from the recorded one"]
    return []
