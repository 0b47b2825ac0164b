"""``python -m gemini_core export ...`` and ``python -m gemini_core evaluate DIR``: argument parsing only.

``export`` writes one compressed point, either from flags (one value each) or from a stored
sweep point (``--point ID``); ``evaluate`` reloads an export and prints one JSON record in the
sweep's format, with the recorded figures beside it.
"""
from __future__ import annotations

import json
import sys

from gemini_core.errors import GeminiError


def add_commands(sub, add_scenario_args, scenario_from, baseline_fn) -> None:
    p = sub.add_parser("export", help="write a compressed checkpoint (folder + recipe + model card)")
    add_scenario_args(p)
    p.add_argument("--run", dest="run_id", help="with --point: the run the point belongs to")
    p.add_argument("--point", dest="point_id", type=int, help="export this stored sweep point (see `points`)")
    p.add_argument("--prune-method", default="none", help="one of none, l1-structured, ..., 2:4")
    p.add_argument("--prune-ratio", type=float, default=0.0, help="in [0, 0.95]")
    p.add_argument("--bits", type=int, default=32, help="32, 16, 8, 6, 4, 3 or 2")
    p.add_argument("--granularity", default="per-channel", help="per-tensor, per-channel, group-32/64/128")
    p.add_argument("--execution", default="dense", help="dense or sparse")
    p.add_argument("--finetune-steps", type=int, default=0, help="recovery steps after pruning")
    p.add_argument("--batch-size", type=int, default=32, help="batch size for latency and memory")
    p.add_argument("--out", required=True, help="the export folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    p.add_argument("--format", default="gemini", help="comma list of gemini, hf, onnx (gemini always)")
    p.add_argument("--onnx-int8", action="store_true", help="also write onnx/model.int8.onnx (onnxruntime)")
    p.add_argument("--zip", action="store_true", help="also write <out>.zip")
    p.set_defaults(func=lambda args: cmd_export(args, scenario_from, baseline_fn))

    p = sub.add_parser("evaluate", help="reload an export and measure it again (one JSON record)")
    p.add_argument("path", help="an export folder or its .zip")
    p.add_argument("--data", help="data file or folder (overrides the recipe's)")
    p.add_argument("--test-data", help="held-out test file (overrides the recipe's)")
    p.add_argument("--batch-size", type=int, help="batch size for latency and memory (default: the recorded one)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    p.set_defaults(func=cmd_evaluate)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_export(args, scenario_from, baseline_fn) -> int:
    from gemini_core.checkpoint.export import export_compressed, export_point, parse_formats
    from gemini_core.results.store import Store

    formats = parse_formats(args.format)
    if args.batch_size < 1:
        raise GeminiError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.point_id is not None:
        path = export_point(Store(), args.point_id, args.out, formats=formats, overwrite=args.overwrite,
                            device=args.device, onnx_int8=args.onnx_int8, make_zip=args.zip, run_id=args.run_id,
                            progress=_progress)
    else:
        if args.run_id is not None:
            raise GeminiError("--run needs --point (the id of the point to export; `points RUN_ID` lists them)")
        from gemini_core.compress import compress
        from gemini_core.config import CompressionConfig
        from gemini_core.device import pick_device
        from gemini_core.checkpoint.export import _check_destination
        from gemini_core.measure import measure_point
        from pathlib import Path

        config = CompressionConfig(prune_method=args.prune_method, prune_ratio=args.prune_ratio,
                                   finetune_steps=args.finetune_steps, bits=args.bits,
                                   granularity=args.granularity, execution=args.execution)
        _check_destination(Path(args.out).expanduser().resolve(), args.overwrite)  # fail before training
        scenario = scenario_from(args)
        baseline = baseline_fn(args, scenario)
        device = pick_device(args.device)
        _progress(f"compressing: {config.label()}")
        compressed = compress(baseline.model, config, scenario, device=device)
        _progress("measuring")
        record = measure_point(compressed, scenario, batch_size=args.batch_size)
        record["measured_at"] = "export"
        path = export_compressed(compressed, scenario, baseline, args.out, record=record, formats=formats,
                                 overwrite=args.overwrite, onnx_int8=args.onnx_int8, make_zip=args.zip,
                                 progress=_progress)
    recipe = json.loads((path / "recipe.json").read_text(encoding="utf-8"))
    record = recipe.get("record") or {}
    summary = {"export": str(path), "label": recipe["label"], "accuracy": record.get("accuracy"),
               "size_bytes": recipe["size_bytes"], "ideal_size_bytes": recipe["ideal_size_bytes"],
               "formats": recipe["formats"], "files": sorted(recipe["files"])}
    if args.zip:
        summary["zip"] = str(path.with_name(path.name + ".zip"))
    if "onnx" in recipe:
        summary["onnx_max_abs_diff"] = recipe["onnx"]["max_abs_diff_vs_torch"]
    source = recipe.get("source") or {}
    if source.get("note"):
        _progress(f"warning: {source['note']}")
    print(json.dumps(summary))
    return 0


def cmd_evaluate(args) -> int:
    from gemini_core.checkpoint.export import evaluate_export

    if args.batch_size is not None and args.batch_size < 1:
        raise GeminiError(f"--batch-size must be at least 1, got {args.batch_size}")
    record = evaluate_export(args.path, device=args.device, batch_size=args.batch_size,
                             data_overrides={"data": args.data, "test_data": args.test_data})
    print(json.dumps(record))
    if not record.get("data_fingerprint_matches"):
        _progress("warning: the test data differs from the data the export was measured on")
    elif not record.get("accuracy_matches_record"):
        _progress("warning: the accuracy differs from the recorded one")
    return 0
