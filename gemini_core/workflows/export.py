"""One export and one evaluate for every model kind.

``export_point`` checks the stored point (its run, its status) and hands it to its kind's export;
``evaluate_export`` unpacks an archive once (with the archive's caps), reads the export through the one reader
every kind shares (``checkpoint.reader.open_export``: schema, paths inside the export, no links, every loaded
file listed, checksums) and hands the folder and its verified recipe to the kind the recipe names: an unknown
kind is one line, never a guess.
"""
from __future__ import annotations

from pathlib import Path

from gemini_core.checkpoint import reader
from gemini_core.checkpoint.archive import _export_root
from gemini_core.checkpoint.format import read_recipe
from gemini_core.errors import GeminiError
from gemini_core.kinds.registry import engine, kind_of
from gemini_core.progress import ProgressFn
from gemini_core.results.peers import is_peer


def export_point(store, point_id: int, out_dir, *, run_id: str | None = None, progress: ProgressFn | None = None,
                 **options) -> Path:
    """Export a stored sweep point of any kind. ``options``: the kind's (classifier: formats, overwrite, device,
    onnx_int8, make_zip; causal LM: overwrite, gguf); a kind ignores the options of other kinds."""
    point = store.get_point(point_id)
    if run_id is not None and point["run_id"] != run_id:
        raise GeminiError(f"point {point_id} belongs to run {point['run_id']}, not {run_id}")
    if point.get("status") != "ok":
        raise GeminiError(f"point {point_id} failed ({point.get('error') or 'no reason stored'}); "
                          "only measured points can be exported")
    if is_peer(point):
        raise GeminiError(f"point {point_id} is a library peer ({point['peer']}), measured for comparison only; "
                          "export one of the product's points")
    return engine(kind_of(point)).export.export_point(store, point, out_dir, progress=progress, **options)


def evaluate_export(path, **options) -> dict:
    """Reload an export folder or .zip of any kind and measure it again: a record with the recorded figures
    beside the new ones. ``options``: device, batch_size, data_overrides (the data, and for hf: models the
    model folder, the user chooses now: an export never chooses what is opened)."""
    with _export_root(path) as root:  # a zip is unpacked once, with the archive's caps, and reused below
        recipe = reader.open_export(root)  # every check, once, before the kind opens anything
        return engine(kind_of(recipe)).export.evaluate_export(root, path, verified=recipe, **options)


def export_summary(path: Path, zip_requested: bool = False) -> dict:
    """What an export wrote, for the command line (from its recipe)."""
    recipe = read_recipe(Path(path))
    return engine(kind_of(recipe)).export.export_summary(Path(path), recipe, zip_requested)


def evaluate_warnings(record: dict) -> list[str]:
    return engine(kind_of(record)).export.evaluate_warnings(record)


def overrides_from_run(run: dict) -> dict:
    """``evaluate_export``'s data overrides for an export of one of this store's own runs: the data (and the
    hf: model folder) the user chose when the run was made, from the local store, never from a recipe."""
    description = run.get("baseline") or {}
    options = description.get("scenario_options") or {}
    name = str(description.get("scenario") or "")
    out = {"data": options.get("data"), "test_data": options.get("test_data")}
    if name.startswith("hf:"):
        out["model"] = name[len("hf:"):]
    return out
