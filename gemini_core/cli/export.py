"""``export`` and ``evaluate DIR``.

``export`` writes one compressed point, either from flags (one value each) or from a stored
sweep point (``--point ID``); ``evaluate`` reloads an export and prints one JSON record in the
sweep's format, with the recorded figures beside it.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from gemini_core.checkpoint.format import FORMATS, parse_formats
from gemini_core.checkpoint.write import check_destination
from gemini_core.cli.common import (
    SettingsFlags,
    add_scenario_args,
    baseline_from,
    note,
    print_json,
    scenario_from,
)
from gemini_core.compress import compress
from gemini_core.config import CompressionConfig
from gemini_core.device import pick_device
from gemini_core.errors import GeminiError
from gemini_core.kinds.classifier.export import export_compressed
from gemini_core.kinds.llm.export import GGUF_TYPES
from gemini_core.measure import measure_point
from gemini_core.results.store import Store
from gemini_core.workflows.export import evaluate_export, evaluate_warnings, export_point, export_summary

_CONFIG_HELPS = {
    "prune_method": "one of none, l1-structured, ..., 2:4",
    "prune_ratio": "in [0, 0.95]",
    "bits": "32, 16, 8, 6, 4, 3 or 2",
    "granularity": "per-tensor, per-channel, group-32/64/128",
    "execution": "dense or sparse",
    "finetune_steps": "recovery steps after pruning",
}
# One flag per CompressionConfig field, defaulting to the field's default.
CONFIG_FLAGS = SettingsFlags(
    CompressionConfig,
    helps=_CONFIG_HELPS,
    defaults={f.name: f.default for f in dataclasses.fields(CompressionConfig) if f.name in _CONFIG_HELPS},
    without_flag={"layer_overrides": "per-layer settings: export a stored point (--point)",
                  "recovery": "plain fine-tuning; a QAT-recovered point is exported with --point"},
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a compressed checkpoint (folder + recipe + model card)")
    add_scenario_args(p)
    p.add_argument("--run", dest="run_id", help="with --point: the run the point belongs to")
    p.add_argument("--point", dest="point_id", type=int, help="export this stored sweep point (see `points`)")
    CONFIG_FLAGS.add_to(p)
    p.add_argument("--batch-size", type=int, default=32, help="batch size for latency and memory")
    p.add_argument("--out", required=True, help="the export folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    p.add_argument("--format", default="gemini", help="comma list of " + ", ".join(FORMATS) + " (gemini always)")
    p.add_argument("--onnx-int8", action="store_true", help="also write onnx/model.int8.onnx (onnxruntime)")
    p.add_argument("--zip", action="store_true", help="also write <out>.zip")
    p.add_argument("--gguf", default="auto", choices=[*GGUF_TYPES, "none"],
                   help="LLM points: also write model.gguf of this type (default auto: the type that holds the "
                        "point's grid, q4_0 / q4_1 for 4 bits, q8_0 for 8, else f32; none: skip)")
    p.set_defaults(func=run)

    p = subparsers.add_parser("evaluate", help="reload an export and measure it again (one JSON record)")
    p.add_argument("path", help="an export folder or its .zip")
    p.add_argument("--data", help="the data to measure on (needed unless the scenario's data is built in: "
                   "a checkpoint never chooses the files it reads)")
    p.add_argument("--test-data", help="held-out test file (text, hf:)")
    p.add_argument("--model", help="hf: exports: the model folder (tokenizer, config); never taken from the recipe")
    p.add_argument("--batch-size", type=int, help="batch size for latency and memory (default: the recorded one)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("--text-column", help="LLM exports measured on a CSV/JSONL: the text column or field")
    p.add_argument("--label-column", help="LLM exports with zero-shot accuracy: the CSV's label column")
    p.set_defaults(func=run)


def run(args) -> int:
    return run_evaluate(args) if args.command == "evaluate" else run_export(args)


def run_export(args) -> int:
    formats = parse_formats(args.format)
    if args.batch_size < 1:
        raise GeminiError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.point_id is not None:
        path = export_point(Store(), args.point_id, args.out, run_id=args.run_id, progress=note, formats=formats,
                            overwrite=args.overwrite, device=args.device, onnx_int8=args.onnx_int8,
                            make_zip=args.zip, gguf=args.gguf)
    else:
        if args.run_id is not None:
            raise GeminiError("--run needs --point (the id of the point to export; `points RUN_ID` lists them)")
        path = _export_from_flags(args, formats)
    summary = export_summary(path, zip_requested=args.zip)
    source = json.loads((path / "recipe.json").read_text(encoding="utf-8")).get("source") or {}
    if source.get("note"):
        note(f"warning: {source['note']}")
    print_json(summary)
    return 0


def _export_from_flags(args, formats) -> Path:
    """Compress the scenario's baseline as the flags say, measure it, export it."""
    config = CompressionConfig(**CONFIG_FLAGS.given(args))
    check_destination(args.out, args.overwrite)  # fail before training
    scenario = scenario_from(args)
    baseline = baseline_from(args, scenario)
    device = pick_device(args.device)
    note(f"compressing: {config.label()}")
    compressed = compress(baseline.model, config, scenario, device=device)
    note("measuring")
    record = measure_point(compressed, scenario, batch_size=args.batch_size)
    record["measured_at"] = "export"
    return export_compressed(compressed, scenario, baseline, args.out, record=record, formats=formats,
                             overwrite=args.overwrite, onnx_int8=args.onnx_int8, make_zip=args.zip, progress=note)


def run_evaluate(args) -> int:
    if args.batch_size is not None and args.batch_size < 1:
        raise GeminiError(f"--batch-size must be at least 1, got {args.batch_size}")
    record = evaluate_export(args.path, device=args.device, batch_size=args.batch_size,
                             data_overrides={"data": args.data, "test_data": args.test_data, "model": args.model,
                                             "text_column": args.text_column, "label_column": args.label_column})
    print_json(record)
    for line in evaluate_warnings(record):
        note(line)
    return 0
