"""Export a stored recommender point and evaluate a recommender export.

An export folder holds:

- ``model.safetensors``: exactly the tensors the point was measured with (packed row-wise codes, float16 row
  scales and offsets, bit masks, float32 dense layers), its layout in the file's metadata; its bytes are the
  ``size_bytes`` the sweep recorded;
- ``score.py``: a standalone scorer (numpy and safetensors only) that reloads the file and scores items for a
  user; ``ids.json``: the data file's user and item ids in index order (for ``score.py --user-id``);
- ``recipe.json`` (kind ``recommend``, checked by ``checkpoint.schema``: its ``recommend`` section holds the
  config, the layout, the training and measurement settings and the weights' hash; every file's SHA-256),
  and ``README.md``.

``export_point`` rebuilds the point from the run's cached baseline (structure, recovery and quantization are
deterministic) and refuses to write when the rebuilt weights' hash differs from the one the sweep stored.
``evaluate_recommend_export`` rebuilds the model from the export's files alone, measures it again on the
recorded split (the data file is the user's to give: an export never chooses what is opened) and says
whether the figures reproduced, and whether the standalone scorer gives the same scores.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from gemini_core.checkpoint import reader
from gemini_core.checkpoint.archive import zip_export
from gemini_core.checkpoint.format import FORMAT, FORMAT_VERSION, RECIPE_FILE, sha256_file
from gemini_core.checkpoint.write import check_destination
from gemini_core.errors import CheckpointError, GeminiError
from gemini_core.fsio import explain_os_error, publish_folder, staging_folder, write_file_atomic
from gemini_core.kinds.recommend import scorer as standalone
from gemini_core.kinds.recommend.baseline import get_recommend_baseline
from gemini_core.kinds.recommend.compress import RecommendPointConfig, build_structure, quantize_model
from gemini_core.kinds.recommend.measure import RecommendMeasureSettings, measure_recommend_point
from gemini_core.kinds.recommend.points import RecommendSweepSpec
from gemini_core.kinds.recommend.scenario import RecommendScenario
from gemini_core.kinds.recommend.stored import LAYOUT_KEY, layout, rebuild, serialize
from gemini_core.kinds.recommend.train import RecommendTrainSettings
from gemini_core.progress import ProgressFn, notify
from gemini_core.scenarios import get_scenario

KIND = "recommend"
MODEL_FILE = "model.safetensors"
SCORER_FILE = "score.py"
IDS_FILE = "ids.json"
PATH_OPTIONS = ("data", "items")  # scenario options that name files: never taken from a recipe
FIGURES = ("ndcg_at_10", "hr_at_10", "auc", "recall_at_20", "ndcg_at_20")
SCORER_USERS = 8  # users the standalone scorer is checked on


# -- rebuilding a stored point ---------------------------------------------------------------------------------
def scenario_from_run(run: dict) -> RecommendScenario:
    """The run's scenario, from this store's own description (the data the user chose for that run)."""
    options = dict((run.get("baseline") or {}).get("scenario_options") or {})
    return get_scenario("recommend", **options)


def rebuild_point(run: dict, point: dict, progress: ProgressFn | None = None):
    """(model, scenario, spec, config) of a stored point, checked against the hash the sweep stored."""
    description = run.get("baseline") or {}
    scenario = scenario_from_run(run)
    spec = RecommendSweepSpec.from_dict(run.get("spec") or {})
    settings = RecommendTrainSettings(**description.get("train_settings", spec.train.to_dict()))
    notify(progress, "message", "loading the baseline")
    baseline = get_recommend_baseline(scenario, settings, progress=progress)
    if baseline.key != point.get("baseline_key"):
        raise CheckpointError(f"the data or training settings of run {run['run_id']} changed since it was "
                              f"measured (baseline {baseline.key}, the point's {point.get('baseline_key')}); sweep "
                              "it again")
    config = RecommendPointConfig.from_dict(point["config"])
    notify(progress, "message", f"rebuilding {config.label()}")
    structured, _ = build_structure(baseline.model, config.structure(), scenario.split, settings)
    model = quantize_model(structured, config, scenario.split)
    recorded = point.get("weights_sha256")
    if recorded and hashlib.sha256(serialize(model)).hexdigest() != recorded:
        raise CheckpointError(f"point {point.get('point_id')} did not rebuild to the weights the sweep measured "
                              "(their hash differs); sweep it again")
    return model, scenario, spec, config


# -- writing an export ---------------------------------------------------------------------------------------
def _small(record: dict | None) -> dict | None:
    """A record without its per-user lists (the recipe keeps the measured figures)."""
    if record is None:
        return None
    return {k: v for k, v in record.items() if not k.startswith("user_") and k not in ("traceback", "cpu_flags")}


def _arch(model) -> dict:
    arch = model.arch()
    return {"model": "recommender", "family": arch["model"], "n_users": arch["n_users"], "n_items": arch["n_items"],
            "dim": int(arch["dim"])}


def _card(recipe: dict) -> str:
    record, section = recipe["record"], recipe["recommend"]
    tables = section["layout"]["tables"]
    lines = [f"# {recipe['label']}", "",
             f"A {section['layout']['arch']['model']} recommender compressed by Gemini Compression Studio "
             f"(kind `recommend`).", "",
             f"- NDCG@10 {100 * record['ndcg_at_10']:.2f}% (95% interval {100 * record['ndcg_at_10_ci95'][0]:.1f} to "
             f"{100 * record['ndcg_at_10_ci95'][1]:.1f}), HR@10 {100 * record['hr_at_10']:.1f}% over "
             f"{record['users_n']} users, each held-out item ranked among {record['negatives_per_user']} sampled items",
             f"- embedding bytes {record['embedding_bytes']:,}; `model.safetensors` {record['size_bytes']:,} bytes",
             f"- scoring 1,000 candidates for one user: p50 {record['latency_ms_p50']:.3f} ms "
             f"({record.get('threads')} threads, {record.get('cpu')})", "",
             "Tables: " + "; ".join(f"{name}: {t['layout']}, {t['ids']:,} ids x {t['dim']}" for name, t in
                                    tables.items()), "",
             "Score items without torch or gemini:", "", "```",
             f"python {SCORER_FILE} . --user 0 --top 10", "```", "",
             "Reload and measure again with gemini: `python -m gemini_core evaluate <this folder> [--data <file>]`."]
    return "\n".join(lines) + "\n"


def write_recommend_export(model, scenario: RecommendScenario, spec: RecommendSweepSpec, config: RecommendPointConfig,
                           out_dir, sweep_record: dict | None = None, overwrite: bool = False,
                           make_zip: bool = False, progress: ProgressFn | None = None) -> Path:
    out_dir = check_destination(out_dir, overwrite)
    notify(progress, "message", "measuring the point")
    record = measure_recommend_point(model, scenario.split, spec.measure)
    record.update({"config": config.to_dict(), "label": config.label()})
    blob = serialize(model)
    log = scenario.log
    with staging_folder(out_dir) as tmp:
        (tmp / MODEL_FILE).write_bytes(blob)
        (tmp / SCORER_FILE).write_text(Path(standalone.__file__).read_text(encoding="utf-8"), encoding="utf-8")
        (tmp / IDS_FILE).write_text(json.dumps({"user_ids": list(log.user_ids), "item_ids": list(log.item_ids)}),
                                    encoding="utf-8")
        record["size_bytes"] = (tmp / MODEL_FILE).stat().st_size
        options = {k: v for k, v in scenario.options.items() if v is not None}
        recipe = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": KIND, "label": config.label(),
            # the shared schema reads a point's stored bit width as config.bits (here: the embedding tables')
            "config": {**config.to_dict(), "bits": config.embedding_bits},
            "scenario": {"name": "recommend", "options": options, "arch": _arch(model),
                         "data_fingerprint": scenario.fingerprint()},
            KIND: {"config": config.to_dict(), "layout": layout(model), "model_file": MODEL_FILE,
                   "scorer_file": SCORER_FILE, "ids_file": IDS_FILE,
                   "weights_sha256": hashlib.sha256(blob).hexdigest(),
                   "train_settings": spec.train.to_dict(), "measure_settings": spec.measure.to_dict(),
                   "recovery_steps": config.recovery_steps, "synthetic_data": bool(log.synthetic),
                   "data_source": log.source, "ranking_eval_key": record.get("ranking_eval_key"),
                   "user_ndcg_at_10": record.get("user_ndcg_at_10")},
            "record": _small(record), "sweep_record": _small(sweep_record), "size_bytes": record["size_bytes"],
        }
        (tmp / "README.md").write_text(_card(recipe), encoding="utf-8")
        recipe["files"] = {p.relative_to(tmp).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                           for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / RECIPE_FILE).write_text(json.dumps(recipe, indent=1, sort_keys=True, default=float), encoding="utf-8")
        reader.open_export(tmp)  # what we wrote passes the reader every evaluate goes through
        publish_folder(tmp, out_dir, replace=overwrite)
    if make_zip:
        try:
            write_file_atomic(out_dir.with_name(out_dir.name + ".zip"), zip_export(out_dir))
        except OSError as exc:
            raise GeminiError(explain_os_error(exc, f"saving {out_dir.name}.zip")
                              or f"could not write {out_dir.name}.zip: {exc.strerror or exc}") from None
    return out_dir


# -- evaluating an export -----------------------------------------------------------------------------------
def load_export_model(root: Path, recipe: dict, verified: bool = False):
    """The model of an export folder (checked by the one reader first, unless the door already did), and the
    layout its file's metadata holds."""
    if not verified:
        recipe = reader.open_export(root)
    section = recipe[KIND]
    try:
        with safe_open(str(root / MODEL_FILE), framework="pt") as handle:
            file_layout = json.loads((handle.metadata() or {}).get(LAYOUT_KEY, "null"))
        tensors = load_file(str(root / MODEL_FILE))
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{MODEL_FILE} cannot be read: {str(exc)[:200]}") from None
    model = rebuild(section["layout"], tensors)
    return model, file_layout


def evaluate_recommend_export(root: Path, data: str | None = None, items: str | None = None,
                              verified: dict | None = None) -> dict:
    """``verified``: the recipe ``reader.open_export`` returned for ``root`` (else it is read and checked here)."""
    root = Path(root)
    recipe = verified if verified is not None else reader.open_export(root)
    if recipe.get("kind") != KIND:
        raise CheckpointError(f"{root} is not a recommender export")
    section = recipe[KIND]
    model, file_layout = load_export_model(root, recipe, verified=True)
    options = {k: v for k, v in (recipe["scenario"].get("options") or {}).items() if k not in PATH_OPTIONS}
    recorded_options = recipe["scenario"].get("options") or {}
    if recorded_options.get("data") and data is None:
        raise GeminiError(f"this export was measured on {Path(str(recorded_options['data'])).name}; give that "
                          "file with --data (an export never chooses the files it reads)")
    if recorded_options.get("items") and items is None:
        raise GeminiError("this export was measured with an item file; give it too")
    if data is not None:
        options["data"] = data
    if items is not None:
        options["items"] = items
    scenario = get_scenario("recommend", **options)
    split = scenario.split
    if (split.n_users, split.n_items) != (model.n_users, model.n_items):
        raise CheckpointError(f"the data has {split.n_users:,} users and {split.n_items:,} items; the export was "
                              f"trained on {model.n_users:,} and {model.n_items:,}")
    measure = RecommendMeasureSettings.from_dict(section.get("measure_settings"))
    record = measure_recommend_point(model, split, measure)
    record["size_bytes"] = (root / MODEL_FILE).stat().st_size
    recorded = recipe.get("record") or {}
    same_users = record.get("ranking_eval_key") == section.get("ranking_eval_key")
    per_user = section.get("user_ndcg_at_10")
    record.update({
        "config": section["config"], "label": recipe.get("label"), "export": str(root),
        **{f"recorded_{name}": recorded.get(name) for name in FIGURES if name in recorded},
        "ndcg_matches_record": bool(same_users and record["ndcg_at_10"] == recorded.get("ndcg_at_10")
                                    and (per_user is None or record["user_ndcg_at_10"] == per_user)),
        "figures_match_record": all(record.get(n) == recorded.get(n) for n in FIGURES if n in recorded),
        "size_matches_record": record["size_bytes"] == recorded.get("size_bytes"),
        "embedding_bytes_match_record": record["embedding_bytes"] == recorded.get("embedding_bytes"),
        "weights_match_record": hashlib.sha256(serialize(model)).hexdigest() == section.get("weights_sha256"),
        "layout_in_file_matches": file_layout == section["layout"],
        "data_fingerprint_matches": scenario.fingerprint() == recipe["scenario"].get("data_fingerprint"),
        "sweep_ndcg_at_10": (recipe.get("sweep_record") or {}).get("ndcg_at_10"),
        "recorded_latency_ms_p50": recorded.get("latency_ms_p50"),
    })
    record.update(scorer_check(root, model, split))
    return record


def scorer_check(root: Path, model, split) -> dict:
    """The standalone scorer (this version's copy of it, never the export's own file: evaluating an export runs
    no code it ships) on the export's safetensors against the model, on a few users and the whole catalogue."""
    scorer = standalone.Scorer.load(root)
    users = np.unique(split.test_users[:SCORER_USERS]) if split.test_users.size else np.arange(1)
    items = torch.arange(split.n_items)
    worst = 0.0
    with torch.no_grad():
        for user in users.tolist():
            mine = model.score_candidates(int(user), items).numpy()
            theirs = scorer.score(int(user), items.numpy())
            scale = max(1.0, float(np.abs(mine).max()))
            worst = max(worst, float(np.abs(mine - theirs).max()) / scale)
    shipped = (root / SCORER_FILE).read_text(encoding="utf-8") if (root / SCORER_FILE).is_file() else None
    return {"scorer_max_relative_diff": worst, "scorer_matches": worst <= 1e-5,
            "scorer_users_checked": int(users.size),
            "scorer_is_this_versions": shipped == Path(standalone.__file__).read_text(encoding="utf-8")}


# -- the kind's side of ``workflows.export`` ----------------------------------------------------------------
def export_point(store, point: dict, out_dir, overwrite: bool = False, make_zip: bool = False,
                 progress: ProgressFn | None = None, **_other_kinds_options) -> Path:
    """``workflows.export.export_point`` for a recommender: model.safetensors, score.py, recipe.json."""
    check_destination(out_dir, overwrite)  # fail before rebuilding
    run = store.get_run(point["run_id"])
    model, scenario, spec, config = rebuild_point(run, point, progress)
    return write_recommend_export(model, scenario, spec, config, out_dir, sweep_record=point, overwrite=overwrite,
                                  make_zip=make_zip, progress=progress)


def evaluate_export(root: Path, path, data_overrides: dict | None = None, verified: dict | None = None,
                    **_other_kinds_options) -> dict:
    given = data_overrides or {}
    return evaluate_recommend_export(root, data=given.get("data"), items=given.get("items"), verified=verified)


def export_summary(path: Path, recipe: dict, zip_requested: bool = False) -> dict:
    record = recipe.get("record") or {}
    return {"export": str(path), "label": recipe["label"], "ndcg_at_10": record.get("ndcg_at_10"),
            "sweep_ndcg_at_10": (recipe.get("sweep_record") or {}).get("ndcg_at_10"),
            "embedding_bytes": record.get("embedding_bytes"), "size_bytes": recipe.get("size_bytes"),
            "latency_ms_p50": record.get("latency_ms_p50"), "files": sorted(recipe["files"]),
            **({"zip": str(Path(path).with_name(Path(path).name + ".zip"))} if zip_requested else {})}


def evaluate_warnings(record: dict) -> list[str]:
    out = []
    if not record.get("ndcg_matches_record"):
        out.append("warning: NDCG@10 differs from the recorded one")
    if not record.get("size_matches_record"):
        out.append("warning: model.safetensors is not the size recorded")
    if not record.get("scorer_matches"):
        out.append(f"warning: the standalone scorer differs from the model by up to "
                   f"{record.get('scorer_max_relative_diff', float('nan')):.2e} (relative)")
    if not record.get("data_fingerprint_matches"):
        out.append("warning: the data differs from the data the export was measured on")
    return out
