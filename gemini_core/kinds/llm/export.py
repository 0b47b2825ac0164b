"""Export a stored LLM point and evaluate an LLM export.

An LLM export folder holds ``model/`` (HF safetensors + tokenizer: transformers reloads it, no remote
code), optionally ``model.gguf`` (written with the ``gguf`` package, by default in the block type that holds
the point's grid; ``evaluate`` reloads it in llama.cpp where installed, else through transformers),
``recipe.json`` (validated by ``checkpoint.schema``; every file with its SHA-256) and ``README.md`` (the
model card). ``evaluate_llm_export`` reloads ``model/`` and measures it again with the recorded settings,
through the same ``measure_llm_point`` as the sweep: the perplexity is reproduced exactly.

An export to evaluate comes from outside: it is read by ``checkpoint.reader.open_export``, the reader every kind
shares (schema, paths inside the export, no links, every loaded file listed, checksums), and its values are
checked for meaning (``check_llm_recipe``) before any model, GGUF or packed folder is opened.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from gemini_core.checkpoint import reader
from gemini_core.checkpoint.format import FORMAT, FORMAT_VERSION, RECIPE_FILE, sha256_file
from gemini_core.checkpoint.write import check_destination
from gemini_core.errors import CheckpointError, ConfigError, GeminiError
from gemini_core.fsio import publish_folder, staging_folder
from gemini_core.kinds.llm import metrics, text_data
from gemini_core.kinds.llm.card import llm_model_card
from gemini_core.kinds.llm.compressed_export import export_compressed, load_compressed
from gemini_core.kinds.llm.gguf_export import export_gguf, grid_type
from gemini_core.kinds.llm.gguf_export import unsupported as unsupported_gguf
from gemini_core.kinds.llm.point import (
    FLOAT_FILES,
    PACKED_FILES,
    LLMPointConfig,
    LLMSettings,
    compress_llm,
    measure_llm_point,
    runtime_settings,
)
from gemini_core.kinds.llm.quantize import RECIPES
from gemini_core.kinds.llm.runtimes import LLM_EXECUTIONS, LLMRunSettings
from gemini_core.kinds.llm.runtimes.exports import evaluate_export as evaluate_runtime_export
from gemini_core.kinds.llm.runtimes.exports import export_llm
from gemini_core.kinds.llm.scenario import LLMScenario
from gemini_core.kinds.llm.source import load_local, save_hf_folder
from gemini_core.kinds.llm.text_data import BUILTIN_TEXT
from gemini_core.progress import ProgressFn, notify
from gemini_core.scenarios import get_scenario

MODEL_DIR = "model"
KIND = "llm"
GGUF_FILE = "model.gguf"
COMPRESSED_DIR = "compressed"  # compressed-tensors pack-quantized copy of a quantized point
OPENVINO_DIR = "openvino"  # the IR, written when the point ran on OpenVINO
GGUF_TYPES = ("auto", "f32", "f16", "q8_0", "q4_0", "q4_1")  # auto: the type that holds the point's grid


def scenario_from_run(run: dict) -> LLMScenario:
    options = dict((run.get("baseline") or {}).get("scenario_options") or {})
    return get_scenario("llm", **options)


def export_llm_point(store, point_id: int, out_dir, gguf: str | None = "auto", overwrite: bool = False,
                     progress: ProgressFn | None = None) -> Path:
    """Rebuild a stored LLM point (same model, text and settings), measure it again, write the export folder.

    The model must be the one the run measured (its weights' hash is part of the run's baseline key)."""
    if gguf is not None and gguf not in GGUF_TYPES:
        raise GeminiError(f"GGUF type {gguf!r}: choose one of {', '.join(GGUF_TYPES)}")
    point = store.get_point(point_id)
    if point.get("kind") != KIND:
        raise GeminiError(f"point {point_id} is not an LLM point")
    if point.get("status") != "ok":
        raise GeminiError(f"point {point_id} failed when it was measured ({point.get('error')}); nothing to export")
    check_destination(out_dir, overwrite)
    run = store.get_run(point["run_id"])
    scenario = scenario_from_run(run)
    notify(progress, "message", "loading the model")
    lm = scenario.load()
    if scenario.baseline_key() != point["baseline_key"]:
        raise CheckpointError(f"the model or text of run {point['run_id']} changed since it was measured "
                              "(its weights' or text's hash differs); sweep it again")
    config = LLMPointConfig.from_dict(point["config"])
    settings = LLMSettings.from_dict(point.get("settings") or {})
    notify(progress, "message", f"compressing: {config.label()}")
    model, steps = compress_llm(lm.model, lm.tokenizer, scenario.text_split, config, settings)
    return write_llm_export(model, lm.tokenizer, scenario, config, settings, out_dir, sweep_record=point,
                            steps=steps, gguf=gguf, overwrite=overwrite, progress=progress)


def write_llm_export(model, tokenizer, scenario: LLMScenario, config: LLMPointConfig, settings: LLMSettings,
                     out_dir, sweep_record: dict | None = None, steps=None, gguf: str | None = "auto",
                     overwrite: bool = False, progress: ProgressFn | None = None) -> Path:
    out_dir = check_destination(out_dir, overwrite)  # before measuring; again before the folder is replaced
    notify(progress, "message", "measuring the point")
    record = measure_llm_point(model, tokenizer, scenario.text_split, config.execution, settings,
                               scenario.zero_shot(settings.zero_shot_examples), size=False,
                               grid=config.grid)
    meta = dict(scenario.load().metadata)
    with staging_folder(out_dir) as tmp:
        notify(progress, "message", "writing safetensors")
        save_hf_folder(model, tokenizer, tmp / MODEL_DIR, {**meta, "gemini_point": config.to_dict()})
        record["size_bytes"] = sum(p.stat().st_size for p in (tmp / MODEL_DIR).glob("*.safetensors"))
        record["size_written"] = FLOAT_FILES
        gguf_skipped = None
        if gguf == "auto":  # the type that holds the point's grid; none for a model this writer cannot write
            gguf_skipped = unsupported_gguf(model)
            gguf = None if gguf_skipped else grid_type(model, config.grid)
        if gguf is not None:
            notify(progress, "message", f"writing GGUF ({gguf})")
            try:
                export_gguf(model, tokenizer, tmp / GGUF_FILE, gguf, name=config.label())
            except GeminiError as exc:
                raise GeminiError(f"GGUF export of {config.label()}: {exc}") from None
        compressed = None
        recipe = RECIPES.get(config.quant_method)
        # integer codes on a symmetric or asymmetric grid: packed by the library (AWQ's are on neither)
        if recipe and recipe.algorithm in ("rtn", "gptq"):
            notify(progress, "message", "writing compressed-tensors (pack-quantized)")
            compressed = export_compressed(model, tokenizer, tmp / COMPRESSED_DIR, config.grid)
            # what a user ships for a quantized point, as the sweep measured it (llm.point.written_size_bytes)
            record["size_bytes"], record["size_written"] = compressed["file_bytes"], PACKED_FILES
        ir_dir = None
        if config.execution.startswith("openvino"):  # the point ran on OpenVINO: ship the IR it ran
            notify(progress, "message", "writing the OpenVINO IR")
            export_llm(model, tokenizer, tmp / OPENVINO_DIR, "openvino-ir", _run_settings(config, settings))
            ir_dir = OPENVINO_DIR
        recipe = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": "llm", "label": config.label(),
            "config": config.to_dict(),
            "scenario": {"name": "llm", "options": {k: v for k, v in scenario.options.items() if v is not None},
                         "arch": scenario.arch(), "data_fingerprint": scenario.fingerprint()},
            "llm": {"config": config.to_dict(), "settings": settings.to_dict(),
                    "text_source": scenario.text_split.source,
                    "model_dir": MODEL_DIR, "gguf_file": GGUF_FILE if gguf is not None else None, "gguf_type": gguf,
                    "gguf_skipped": gguf_skipped,
                    "openvino_dir": ir_dir, "compressed_dir": COMPRESSED_DIR if compressed else None,
                    "compressed_summary": compressed},
            "record": record, "sweep_record": _small(sweep_record), "steps": steps or [],
            "source_model": meta, "size_bytes": record["size_bytes"],
        }
        (tmp / "README.md").write_text(llm_model_card(recipe), encoding="utf-8")
        recipe["files"] = {p.relative_to(tmp).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                           for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True), encoding="utf-8")
        reader.open_export(tmp)  # what we wrote passes the reader every evaluate goes through
        check_destination(out_dir, overwrite)  # someone may have written there meanwhile
        publish_folder(tmp, out_dir, replace=overwrite)
    return out_dir


def _small(record: dict | None) -> dict | None:
    if record is None:
        return None
    keys = ("point_id", "run_id", "perplexity", "context_len", "stride", "tokens_scored", "prefill_ms_p50",
            "decode_tokens_per_s", "size_bytes", "threads", "load_avg_1m", "accuracy")
    return {k: record.get(k) for k in keys if k in record}


def check_llm_recipe(root: Path, recipe: dict) -> tuple[LLMPointConfig, LLMSettings]:
    """The point and settings of a verified LLM recipe, checked for meaning before anything is loaded: the
    recipe's two copies of the point agree, the point and settings are ones the product makes, and the packed
    ``compressed/`` files store the bits and groups the point says."""
    if recipe.get("kind") != KIND:
        raise CheckpointError("recipe.json: field kind: this is not an LLM export")
    llm = recipe["llm"]
    if recipe["config"] != llm["config"]:
        raise CheckpointError("recipe.json: field config differs from llm.config (an export writes the same point "
                              "in both)")
    try:
        config = LLMPointConfig.from_dict(llm["config"])
    except ConfigError as exc:
        raise CheckpointError(f"recipe.json: field llm.config: {exc}") from None
    try:
        settings = LLMSettings.from_dict(llm["settings"])
    except ConfigError as exc:
        raise CheckpointError(f"recipe.json: field llm.settings: {exc}") from None
    if llm.get("compressed_dir"):
        if config.grid is None:
            raise CheckpointError("recipe.json: field llm.compressed_dir: a float point has no packed files")
        stored = reader.read_json_member(root, f"{llm['compressed_dir']}/config.json")
        weights = _packed_weights(stored)
        where = f"does not fit {llm['compressed_dir']}/"
        if weights.get("num_bits") != config.bits:
            raise CheckpointError(f"recipe.json: field llm.config.bits {where}: the recipe says {config.bits} bits, "
                                  f"the file stores {_number(weights.get('num_bits'))}-bit codes")
        group = weights.get("group_size") if weights.get("strategy") == "group" else None
        if group != config.group_size:
            said = f"groups of {config.group_size}" if config.group_size else "one scale per row"
            have = f"groups of {_number(group)}" if group else "one scale per row"
            raise CheckpointError(f"recipe.json: field llm.config.group_size {where}: the recipe says {said}, the "
                                  f"file stores {have}")
    return config, settings


def _packed_weights(config_json) -> dict:
    """The weight scheme of a compressed-tensors config.json (one config group), or one line."""
    try:
        groups = config_json["quantization_config"]["config_groups"]
        (group,) = groups.values()
        weights = group["weights"]
        if isinstance(weights, dict):
            return weights
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    raise CheckpointError("compressed/config.json holds no single compressed-tensors weight scheme")


def _number(value) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "unknown"


def evaluate_llm_export(path, data: str | None = None, text_column: str | None = None,
                        label_column: str | None = None, export: str | None = None,
                        verified: dict | None = None) -> dict:
    """Reload ``path``/model and measure it again with the recorded settings on the recorded text (the built-in
    text, or ``data``: an export never chooses the files it reads). ``perplexity_matches_record``: exactly equal.
    ``export``: what the user gave (a zip unpacked at ``path``); ``verified``: the recipe ``reader.open_export``
    returned for ``path`` (read again when not given)."""
    root = Path(path)
    # the one reader every kind shares: nothing is opened before it passed
    recipe = verified if verified is not None else reader.open_export(root)
    config, settings = check_llm_recipe(root, recipe)
    llm = recipe["llm"]
    if data is None and llm["text_source"] != BUILTIN_TEXT:
        raise GeminiError("this export was measured on a text file of its own, not the built-in text; a checkpoint "
                          "never chooses the files it reads: give that text now (--data FILE)")
    model_dir = reader.member(root, llm["model_dir"])
    options = {"model": f"hf:{model_dir}", "data": data, "text_column": text_column, "label_column": label_column}
    scenario = get_scenario("llm", **{k: v for k, v in options.items() if v is not None})
    lm = load_local(model_dir)
    scenario._lm = lm
    record = measure_llm_point(lm.model, lm.tokenizer, scenario.text_split, config.execution, settings,
                               scenario.zero_shot(settings.zero_shot_examples), size=False,
                               grid=config.grid)
    shipped = reader.member(root, llm.get("compressed_dir") or llm["model_dir"])  # the packed files if any
    record["size_bytes"] = sum(p.stat().st_size for p in shipped.glob("*.safetensors"))
    record["size_written"] = PACKED_FILES if llm.get("compressed_dir") else FLOAT_FILES
    recorded = recipe.get("record") or {}
    record.update({"kind": KIND, "quality_metric": "perplexity", "label": recipe.get("label"),
                   "config": config.to_dict(), "export": export or str(root),
                   "recorded_perplexity": recorded.get("perplexity"),
                   "perplexity_matches_record": record["perplexity"] == recorded.get("perplexity"),
                   "data_fingerprint_matches": scenario.fingerprint() == recipe["scenario"].get("data_fingerprint"),
                   "sweep_perplexity": (recipe.get("sweep_record") or {}).get("perplexity")})
    ids = text_data.evaluation_ids(lm.tokenizer, scenario.text_split, settings.eval_tokens)
    if llm.get("compressed_dir"):  # the packed folder reloaded by transformers' compressed-tensors integration
        packed_dir = reader.member(root, llm["compressed_dir"])
        packed = load_compressed(packed_dir)
        ppl = metrics.perplexity(packed, ids, settings.context_len, settings.stride)["perplexity"]
        record["compressed_tensors"] = {"perplexity": ppl, "relative_diff": abs(ppl - record["perplexity"]) /
                                        record["perplexity"],
                                        "file_bytes": sum(p.stat().st_size for p in packed_dir.glob("*.safetensors"))}
    if llm.get("gguf_file"):  # the GGUF reloaded by llama.cpp where it is installed (else transformers)
        gguf = evaluate_runtime_export(reader.member(root, llm["gguf_file"]), "gguf", ids,
                                       _reload_settings(config, settings, ids))
        record["gguf"] = {"type": llm.get("gguf_type"), **{k: gguf.get(k) for k in (
            "runtime", "perplexity", "decode_tokens_per_s", "file_size_mb", "fraction_of_bandwidth_limit")}}
    if llm.get("openvino_dir"):  # the IR reloaded in OpenVINO's runtime and measured again
        ir = evaluate_runtime_export(reader.member(root, llm["openvino_dir"]), "openvino-ir", ids,
                                     _reload_settings(config, settings, ids))
        record["openvino_ir"] = {k: ir.get(k) for k in ("perplexity", "decode_tokens_per_s", "file_size_mb",
                                                        "fraction_of_bandwidth_limit")}
    return record


def _reload_settings(config: LLMPointConfig, settings: LLMSettings, ids) -> LLMRunSettings:
    """The runtime settings to measure a reloaded GGUF or IR on ``ids``: the point's, with the prompt and the
    prefill no longer than the text the export was measured on (a torch point measures its prefill on at most
    ``eval_tokens`` tokens; the runtime needs two more than its prompt). Without this an export made with
    ``--eval-tokens 64`` (prefill 128 by default) could not be evaluated again."""
    run = _run_settings(config, settings)
    room = max(1, int(ids.numel()) - 2)
    return dataclasses.replace(run, prefill_tokens=min(run.prefill_tokens, room),
                               prompt_tokens=min(run.prompt_tokens, room))


def _run_settings(config: LLMPointConfig, settings: LLMSettings) -> LLMRunSettings:
    """The runtime settings a point ran with: the recorded measurement's, its weight grid, and its execution's
    overrides."""
    overrides = LLM_EXECUTIONS[config.execution].overrides if config.execution in LLM_EXECUTIONS else {}
    return dataclasses.replace(runtime_settings(settings, config.grid), **overrides)


# -- the kind's side of ``workflows.export`` ----------------------------------------------------------------
def export_point(store, point: dict, out_dir, gguf: str | None = "auto", overwrite: bool = False,
                 progress: ProgressFn | None = None, **_other_kinds_options) -> Path:
    """``workflows.export.export_point`` for a causal LM: model/ (safetensors), model.gguf, recipe.json."""
    return export_llm_point(store, point["point_id"], out_dir, gguf=None if gguf == "none" else gguf,
                            overwrite=overwrite, progress=progress)


def evaluate_export(root: Path, path, data_overrides: dict | None = None, verified: dict | None = None,
                    **_other_kinds_options) -> dict:
    given = data_overrides or {}
    return evaluate_llm_export(root, data=given.get("data"), text_column=given.get("text_column"),
                               label_column=given.get("label_column"), export=str(Path(path).expanduser().resolve()),
                               verified=verified)


def export_summary(path: Path, recipe: dict, zip_requested: bool = False) -> dict:
    return {"export": str(path), "label": recipe["label"], "perplexity": recipe["record"]["perplexity"],
            "sweep_perplexity": (recipe.get("sweep_record") or {}).get("perplexity"),
            "size_bytes": recipe["size_bytes"], "files": sorted(recipe["files"])}


def evaluate_warnings(record: dict) -> list[str]:
    return [] if record.get("perplexity_matches_record") else ["warning: the perplexity differs from the recorded one"]
