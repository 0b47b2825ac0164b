"""Baselines shipped with the product: the demo's first point without training it first.

``gemini_core/assets/baselines/<baseline key>/`` holds ``model.safetensors`` and ``recipe.json``: the key, the
recipe the weights were trained from (architecture, data fingerprint, training settings, baseline format), the
test accuracy they reach, and each file's size and SHA-256. A fresh home installs it into its baseline cache
only after every check passes:

1. the folder is read by the export reader's rules (``checkpoint.reader``): no links or special files, nothing
   but ``recipe.json`` and the files it lists, each of its listed size and checksum;
2. the recipe is the one asked for: its key, architecture, data fingerprint, settings and format equal what this
   scenario and these settings give, and the key recomputed from them equals its name;
3. the weights' header names, dtypes and shapes are the model's, then the weights load strictly;
4. the loaded model classifies the test split exactly as the recipe says (the test accuracy, to one example).

Anything else: the reason is reported and the baseline is trained as before (``workflows.baselines``). ``python
-m gemini_core.checkpoint.shipped check digits`` retrains from the recipe and compares; ``write digits`` ships anew.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gemini_core.checkpoint.reader import check_checksums, check_listed, scan_export
from gemini_core.device import pick_device
from gemini_core.errors import CheckpointError, GeminiError
from gemini_core.fsio import sha256_file
from gemini_core.progress import ProgressFn, notify
from gemini_core.scenarios import get_scenario
from gemini_core.scenarios.registry import SCENARIOS
from gemini_core.scenarios.sizes import header_entries, read_json_object
from gemini_core.training.baseline import (
    BASELINE_FORMAT,
    Baseline,
    accelerator_name,
    baseline_key,
    cache_folder,
    get_baseline,
    key_of_content,
    test_correctness,
    write_cached,
)
from gemini_core.training.loop import reproducible

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "assets" / "baselines"
WEIGHTS_FILE = "model.safetensors"
RECIPE_FILE = "recipe.json"
MAX_RECIPE_BYTES = 1 << 20
MAX_HISTORY_RECORDS = 1000
_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


def shipped_folder(key: str, root: Path | None = None) -> Path | None:
    """The shipped folder for ``key``, or None when the product ships no baseline for it."""
    folder = (root or SHIPPED_DIR) / key
    return folder if (folder / RECIPE_FILE).is_file() else None


def ships_default(scenario_name: str, train: dict | None = None, device=None) -> bool:
    """Whether a baseline for ``scenario_name`` trained with ``train`` (None: the scenario's default settings) on
    ``device`` (None: the one the product picks) ships with the product, by its recipe alone (for estimates: using it
    still checks everything). Shipped baselines were trained on the CPU: on a GPU the key differs, so it trains."""
    entry = SCENARIOS.get(scenario_name)
    default = getattr(getattr(entry, "factory", None), "default_train", None)
    if entry is None or entry.prefix or default is None:
        return False
    if accelerator_name(device if device is not None else pick_device()) is not None:
        return False
    wanted = dict(train) if train else default.to_dict()
    for recipe_path in SHIPPED_DIR.glob(f"*/{RECIPE_FILE}"):
        try:
            recipe = read_json_object(recipe_path, MAX_RECIPE_BYTES)
        except (CheckpointError, OSError):
            continue
        if recipe.get("scenario") == scenario_name and recipe.get("train_settings") == {**default.to_dict(), **wanted}:
            return True
    return False


def _recipe_content(recipe: dict) -> dict:
    return {"format": recipe["format"], "arch": recipe["arch"], "data": recipe["data"],
            "train": recipe["train_settings"]}


def _check_recipe(recipe: dict, scenario, settings, key: str, folder: Path) -> None:
    wanted = {"key": str, "format": int, "scenario": str, "arch": dict, "data": str, "train_settings": dict,
              "test_accuracy": float, "test_n": int, "files": dict}
    for field, kind in wanted.items():
        value = recipe.get(field)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{folder.name}/{RECIPE_FILE}: field {field} is missing or not {kind.__name__}")
    expected = {"key": key, "format": BASELINE_FORMAT, "scenario": scenario.name, "arch": scenario.arch(),
                "data": scenario.fingerprint(), "train_settings": settings.to_dict()}
    for field, value in expected.items():
        if recipe[field] != value:
            raise CheckpointError(f"the shipped baseline's recipe differs in {field} ({str(recipe[field])[:80]!r}, "
                                  f"expected {str(value)[:80]!r})")
    if key_of_content(scenario.name, _recipe_content(recipe)) != key:
        raise CheckpointError("the shipped baseline's recipe does not give its key")
    info = recipe["files"].get(WEIGHTS_FILE)
    if set(recipe["files"]) != {WEIGHTS_FILE} or not isinstance(info, dict) \
            or not isinstance(info.get("bytes"), int) or not isinstance(info.get("sha256"), str):
        raise CheckpointError(f"the shipped baseline's recipe must list {WEIGHTS_FILE} alone, with its bytes and "
                              "sha256")


def _check_header(weights: Path, model: torch.nn.Module) -> None:
    entries = header_entries(weights)
    state = model.state_dict()
    expected = {name: (_DTYPES.get(t.dtype, str(t.dtype)), tuple(t.shape)) for name, t in state.items()}
    if entries != expected:
        differ = sorted(set(entries) ^ set(expected)) or sorted(n for n in entries if entries[n] != expected[n])
        raise CheckpointError(f"the shipped weights do not fit the model ({differ[0]!r} and {len(differ) - 1} more)")


def load_shipped(folder: Path, scenario, settings, key: str, model: torch.nn.Module) -> dict:
    """Check ``folder`` (the module's rules 1-4) and load its weights into ``model``; its recipe, or
    CheckpointError naming the first thing that failed. ``model`` may hold part of the weights on failure."""
    recipe = read_json_object(folder / RECIPE_FILE, MAX_RECIPE_BYTES, f"{folder.name}/{RECIPE_FILE}")
    _check_recipe(recipe, scenario, settings, key, folder)
    check_listed(recipe, scan_export(folder), only_listed=True)
    check_checksums(folder, recipe)
    _check_header(folder / WEIGHTS_FILE, model)
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=True)
    model.eval()
    correct = test_correctness(model, scenario, settings.threads)
    right = sum(correct)
    if len(correct) != recipe["test_n"] or abs(right - recipe["test_accuracy"] * len(correct)) > 1.0:
        raise CheckpointError(f"the shipped weights classify {right} of {len(correct)} test examples right; "
                              f"the recipe says {recipe['test_accuracy']:.4f} of {recipe['test_n']}")
    recipe["test_correct"] = correct
    recipe["history"] = _plain_history(recipe.get("history"))
    return recipe


def _plain_history(history) -> list[dict]:
    """The training history shown on the baseline's chart: records of plain numbers and short strings only."""
    if not isinstance(history, list):
        return []
    out = []
    for record in history[:MAX_HISTORY_RECORDS]:
        if isinstance(record, dict):
            out.append({str(k)[:40]: v for k, v in record.items()
                        if (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
                        or (isinstance(v, str) and len(v) <= 200)})
    return out


def install_shipped(scenario, settings, key: str, progress: ProgressFn | None = None) -> Baseline | None:
    """The baseline the product ships for ``key``, checked (this module's rules) and copied into this home's
    cache; None when none ships, or when it fails a check (the reason is reported: the caller trains it)."""
    source = shipped_folder(key)
    if source is None:
        return None
    notify(progress, "message", "checking the baseline shipped with gemini (checksum, recipe, accuracy)")
    with reproducible(settings.seed, settings.threads):
        model = scenario.build_model()
    try:
        recipe = load_shipped(source, scenario, settings, key, model)
    except (GeminiError, OSError) as exc:
        notify(progress, "message", f"the shipped baseline was not used ({exc}); training it instead",
               shipped_refused=str(exc))
        return None
    folder = cache_folder(key)
    write_cached(folder, scenario, model, key, settings, recipe["history"], recipe["test_accuracy"],
                 recipe["test_correct"], replace=False, origin="shipped")
    notify(progress, "shipped", "baseline shipped with gemini: checksum, recipe and test accuracy verified",
           baseline_key=key)
    return Baseline(scenario, model, key, settings, recipe["history"], recipe["test_accuracy"], True, folder,
                    test_correct=recipe["test_correct"], origin="shipped")


def write_shipped(baseline, root: Path | None = None) -> Path:
    """Ship ``baseline`` (trained from its recipe): its weights and recipe, in ``root``/<key>."""
    folder = (root or SHIPPED_DIR) / baseline.key
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_FILE
    save_file({k: v.contiguous() for k, v in baseline.model.state_dict().items()}, str(weights))
    correct = baseline.test_correct or []
    recipe = {"key": baseline.key, "format": BASELINE_FORMAT, "scenario": baseline.scenario.name,
              "arch": baseline.scenario.arch(), "data": baseline.scenario.fingerprint(),
              "train_settings": baseline.settings.to_dict(), "test_accuracy": float(baseline.test_accuracy),
              "test_n": len(correct), "history": baseline.history, "trained_with": f"torch {torch.__version__}",
              "files": {WEIGHTS_FILE: {"bytes": weights.stat().st_size, "sha256": sha256_file(weights)}}}
    (folder / RECIPE_FILE).write_text(json.dumps(recipe, indent=1, sort_keys=True) + "\n")
    return folder


def retrain_and_compare(scenario_name: str) -> dict:
    """Train the scenario's default baseline from its recipe in a temporary home; how it compares with the shipped."""
    scenario = get_scenario(scenario_name)
    settings = scenario.default_train
    key = baseline_key(scenario, settings, "cpu")
    folder = shipped_folder(key)
    if folder is None:
        raise CheckpointError(f"no shipped baseline for {scenario_name} (key {key})")
    model = scenario.build_model()
    recipe = load_shipped(folder, scenario, settings, key, model)
    previous = os.environ.get("GEMINI_HOME")
    with tempfile.TemporaryDirectory() as home:
        os.environ["GEMINI_HOME"] = home
        try:
            fresh = get_baseline(scenario, settings, device="cpu", retrain=True)
        finally:
            os.environ.pop("GEMINI_HOME") if previous is None else os.environ.__setitem__("GEMINI_HOME", previous)
    shipped_state, fresh_state = model.state_dict(), fresh.model.state_dict()
    max_diff = max(float((shipped_state[k].double() - fresh_state[k].double()).abs().max()) for k in shipped_state)
    agree = sum(a == b for a, b in zip(recipe["test_correct"], fresh.test_correct or [])) / max(1, recipe["test_n"])
    return {"key": key, "identical_weights": max_diff == 0.0, "max_weight_difference": max_diff,
            "shipped_test_accuracy": recipe["test_accuracy"], "retrained_test_accuracy": fresh.test_accuracy,
            "test_correctness_agreement": agree, "retrained": fresh}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("check", "write"):
        print("usage: python -m gemini_core.training.shipped check|write <scenario>", file=sys.stderr)
        return 2
    result = retrain_and_compare(argv[1]) if argv[0] == "check" else None
    if argv[0] == "write":
        scenario = get_scenario(argv[1])
        os.environ["GEMINI_HOME"] = tempfile.mkdtemp()
        print(write_shipped(get_baseline(scenario, device="cpu", retrain=True)))
        return 0
    result.pop("retrained")
    print(json.dumps(result, indent=1))
    return 0 if result["identical_weights"] or abs(result["shipped_test_accuracy"]
                                                 - result["retrained_test_accuracy"]) <= 0.01 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
