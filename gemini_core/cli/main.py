"""``python -m gemini_core ...``: argument parsing only; every command calls engine functions.

JSON goes to stdout (one object per line for points); progress goes to stderr; bad input exits
with status 2 and one line naming the problem.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from gemini_core.errors import ConfigError, GeminiError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _add_scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default="digits",
                   help="digits | breast-cancer | text | images | tabular | hf:<model id or dir> (default digits)")
    p.add_argument("--data", help="training data file or folder (text, images, tabular, hf:)")
    p.add_argument("--test-data", help="optional held-out test file (text, hf:)")
    p.add_argument("--text-column", help="text column: header name or 0-based position")
    p.add_argument("--label-column", help="label column: header name or 0-based position")
    p.add_argument("--header", choices=["infer", "yes", "no"], default=None,
                   help="whether the CSV/TSV has a header row (default: infer)")
    p.add_argument("--max-train-examples", type=int, help="text: cap on training examples")
    p.add_argument("--max-length", type=int, help="text: tokens per example")
    p.add_argument("--image-size", help="images: HxW to resize to (default: the most common size, at most 64)")
    p.add_argument("--epochs", type=int, help="baseline training epochs")
    p.add_argument("--train-batch-size", type=int, help="baseline training batch size")
    p.add_argument("--lr", type=float, help="baseline learning rate")
    p.add_argument("--max-steps", type=int, help="stop baseline training after this many steps")
    p.add_argument("--retrain", action="store_true", help="train the baseline again even if cached")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: GEMINI_THREADS, else torch's choice, "
                   "one per core); every point records the number it ran with")


def _scenario_from(args):
    from gemini_core.scenarios import get_scenario

    header = {"yes": True, "no": False, "infer": "infer", None: None}[args.header]
    options = {"data": args.data, "test_data": args.test_data, "text_column": args.text_column,
               "label_column": args.label_column, "header": header,
               "max_train_examples": args.max_train_examples, "max_length": args.max_length,
               "image_size": args.image_size}
    return get_scenario(args.scenario, **{k: v for k, v in options.items() if v is not None})


def _train_settings(args, scenario):
    changes = {"epochs": args.epochs, "batch_size": args.train_batch_size, "lr": args.lr,
               "max_steps": args.max_steps}
    changes = {k: v for k, v in changes.items() if v is not None}
    for key, value in changes.items():
        if key != "lr" and value < 1:
            raise GeminiError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
    return dataclasses.replace(scenario.default_train, **changes)


def _baseline(args, scenario):
    from tqdm import tqdm

    from gemini_core.training.loop import get_baseline

    bar = None

    def progress(event):
        nonlocal bar
        if event["event"] == "step":
            if bar is None:
                bar = tqdm(total=event["total_steps"], desc=f"training {scenario.name}", file=sys.stderr,
                           unit="step")
            bar.update(1)
            bar.set_postfix(loss=f"{event['loss']:.3f}")
        elif event["event"] == "epoch" and bar is not None:
            bar.set_postfix(loss=f"{event['train_loss']:.3f}", val_acc=f"{event['val_accuracy']:.3f}")

    try:
        return get_baseline(scenario, _train_settings(args, scenario), progress=progress, retrain=args.retrain,
                            device=args.device)
    finally:
        if bar is not None:
            bar.close()


def cmd_train(args) -> int:
    if args.adaptive:
        return cmd_train_adaptive(args)
    for flag in ("nproc", "target_ratio", "prune_method", "qat_bits", "qat_granularity", "qat_start_epoch",
                 "lr_policy", "tolerance", "schedule", "mask", "patience", "start_epoch", "end_epoch", "guard", "init"):
        if getattr(args, flag) is not None:
            raise GeminiError(f"--{flag.replace('_', '-')} is an adaptive-training flag: add --adaptive")
    scenario = _scenario_from(args)
    baseline = _baseline(args, scenario)
    print(json.dumps(baseline.describe()))
    return 0


def _adaptive_settings(args, scenario):
    from gemini_core.adaptive.train import AdaptiveSettings

    train = _train_settings(args, scenario)  # checks --epochs etc.
    given = {"target_ratio": args.target_ratio, "prune_method": args.prune_method, "schedule": args.schedule,
             "start_epoch": args.start_epoch, "end_epoch": args.end_epoch, "tolerance": args.tolerance,
             "guard": args.guard, "patience": args.patience, "mask": args.mask, "qat_bits": args.qat_bits,
             "qat_granularity": args.qat_granularity, "qat_start_epoch": args.qat_start_epoch,
             "lr_policy": args.lr_policy}
    return AdaptiveSettings(epochs=train.epochs, lr=train.lr, batch_size=train.batch_size,
                            weight_decay=train.weight_decay, max_steps=train.max_steps, seed=train.seed,
                            **{k: v for k, v in given.items() if v is not None})


def cmd_train_adaptive(args) -> int:
    """``train --adaptive``: adaptive training, on ``--nproc`` processes through torchrun when asked."""
    from tqdm import tqdm

    from gemini_core.training import distributed
    from gemini_core.adaptive.train import train_adaptive

    scenario = _scenario_from(args)
    settings = _adaptive_settings(args, scenario)  # bad flags fail here, before any process starts
    if args.nproc is not None and args.nproc < 1:
        raise GeminiError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc and args.nproc > 1 and not distributed.in_worker():
        return distributed.launch(args.argv, args.nproc)
    device = args.device
    if distributed.in_worker():
        device = distributed.init_worker(args.device)
    from gemini_core.adaptive.train import dist_info

    rank, _ = dist_info()
    init = None
    if args.init == "baseline":
        import torch.distributed as dist

        from gemini_core.training.loop import get_baseline

        # Rank 0 trains (or loads) the starting baseline first; the others then find it in the cache.
        for turn in ((0, 1) if dist.is_initialized() else (0,)):
            if (rank == 0) == (turn == 0):
                init = get_baseline(scenario, device=device)
            if dist.is_initialized():
                dist.barrier()
    bar = None

    def progress(event):
        nonlocal bar
        kind = event["event"]
        if kind == "start":
            bar = tqdm(total=event["total_steps"], desc=f"adaptive {scenario.name}", file=sys.stderr, unit="step")
        elif kind == "step" and bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{event['loss']:.3f}")
        elif kind == "epoch" and bar is not None:
            bar.set_postfix(loss=f"{event['train_loss']:.3f}", val_acc=f"{event['val_accuracy']:.3f}",
                            lr=f"{event['lr']:.2e}", params=event["params"])
            bar.write(f"epoch {event['epoch']}/{event['epochs']}: loss {event['train_loss']:.4f}, val "
                      f"{event['val_accuracy']:.4f}, lr {event['lr']:.2e}, params {event['params']:,}, "
                      f"MACs {event['macs']:,}, ratio {event['prune_ratio_now']:.3f}"
                      + (" (rolled back)" if event["rolled_back"] else ""), file=sys.stderr)
        elif kind == "early_stop" and bar is not None:
            bar.write(f"early stop after epoch {event['epoch']} (best: epoch {event['best_epoch']})", file=sys.stderr)
        elif kind == "cached":
            print(f"adaptive baseline {event['baseline_key']} loaded from the cache", file=sys.stderr)

    try:
        baseline = train_adaptive(scenario, settings, progress=progress if rank == 0 else None, device=device,
                                  init=init, retrain=args.retrain)
    finally:
        if bar is not None:
            bar.close()
    if rank == 0 and baseline is not None:
        print(json.dumps({**baseline.describe(), "summary": baseline.summary or {}}, default=float))
    return 0


def cmd_sweep(args) -> int:
    from tqdm import tqdm

    from gemini_core.results.store import Store
    from gemini_core.workflows.sweep import SweepSpec, run_sweep

    spec = SweepSpec.from_strings(args.prune_method, args.prune_ratios, args.bits, args.granularity,
                                  args.execution, args.finetune_steps, args.batch_size, args.recovery)
    from gemini_core.measure import memory_cap_bytes

    memory_cap_bytes()  # a malformed GEMINI_MAX_BATCH_BYTES fails here, before any training
    out = None
    if args.out:
        out_path = Path(args.out)
        if not out_path.parent.exists():
            raise GeminiError(f"--out folder {out_path.parent} does not exist")
        out = out_path.open("a", encoding="utf-8")
    if args.ray_address and args.executor != "ray":
        raise GeminiError("--ray-address needs --executor ray")
    if args.executor == "ray":
        from gemini_core.workflows.ray_executor import cluster_summary, connect

        seconds = connect(args.ray_address)  # before the baseline: a bad address fails fast
        cluster = cluster_summary(args.ray_address)
        print(f"Ray ({cluster['address']}): {cluster['n_nodes']} node(s), {cluster['cpus']:g} CPUs, "
              f"{cluster['gpus']:g} GPUs; connected in {seconds:.1f} s", file=sys.stderr)
    scenario = _scenario_from(args)
    baseline = _baseline(args, scenario)
    failed = 0
    try:
        with tqdm(total=spec.n_points(), desc="sweep", unit="point", file=sys.stderr) as bar:
            for record in run_sweep(scenario, baseline, spec, store=Store(), device=args.device, force=args.force,
                                    name=args.name, executor=args.executor, ray_address=args.ray_address):
                line = json.dumps({k: v for k, v in record.items() if k != "traceback"})
                print(line, file=out or sys.stdout, flush=True)
                failed += record.get("status") == "failed"
                bar.update(1)
    finally:
        if out is not None:
            out.close()
    if failed:
        print(f"{failed} point(s) failed; their reasons are in the records", file=sys.stderr)
    return 0


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A plain aligned text table (the CLI's compact view)."""
    if not rows:
        return "(empty)"
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def parse_allocate(text: str) -> dict:
    """``max-drop=1`` or ``speedup=3`` or ``speedup=3,max-drop=2`` -> allocate() keyword arguments."""
    out: dict = {"objective": "smallest-size", "max_accuracy_drop_points": None}
    for item in [i.strip() for i in str(text).split(",") if i.strip()]:
        key, _, value = item.partition("=")
        key = key.strip().lower()
        try:
            number = float(value)
        except ValueError:
            raise GeminiError(f"--allocate: {item!r} needs a number, e.g. max-drop=1 or speedup=3") from None
        if key in ("max-drop", "max_drop"):
            out["max_accuracy_drop_points"] = number
        elif key in ("max-loss", "max_loss"):
            out["max_loss_increase"] = number
        elif key == "speedup":
            out["objective"], out["target_speedup"] = "speedup", number
        else:
            raise GeminiError(f"--allocate: unknown budget {key!r}; use max-drop=POINTS, max-loss=NATS and/or speedup=X")
    if out["objective"] == "smallest-size" and out["max_accuracy_drop_points"] is None \
            and out.get("max_loss_increase") is None:
        raise GeminiError("--allocate needs max-drop=POINTS or max-loss=NATS (smallest size within it) or speedup=X")
    from gemini_core.workflows.allocator import check_budget

    try:  # before the analysis runs, not after it
        check_budget(out["objective"], out["max_accuracy_drop_points"], out.get("target_speedup"),
                     out.get("max_loss_increase"))
    except GeminiError as exc:
        raise GeminiError(f"--allocate: {exc}") from None
    return out


def cmd_sensitivity(args) -> int:
    from tqdm import tqdm

    from gemini_core.workflows.allocator import allocate
    from gemini_core.config import parse_list
    from gemini_core.workflows.sensitivity import AnalysisParams, run_analysis
    from gemini_core.results.store import Store

    def integer(text):
        return int(str(text))

    params = AnalysisParams(ratios=tuple(parse_list(args.ratios, float, "ratios")),
                            bits=tuple(parse_list(args.bits, integer, "bits")), granularity=args.granularity,
                            prune_method=args.prune_method, max_examples=args.max_examples,
                            batch_size=args.latency_batch, phases=tuple(parse_list(args.phases, str, "phases")))
    allocation_args = parse_allocate(args.allocate) if args.allocate else None
    if args.measure and not args.allocate:
        raise GeminiError("--measure measures an allocation: add --allocate")
    out_path = Path(args.out) if args.out else None
    if out_path is not None and not out_path.parent.exists():
        raise GeminiError(f"--out folder {out_path.parent} does not exist")
    scenario = _scenario_from(args)
    baseline = _baseline(args, scenario)
    store = Store()
    bar = None

    def progress(event):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=event["total"], desc="sensitivity", unit="eval", file=sys.stderr)
        bar.update(1)
        bar.set_postfix_str(event["item"][-40:])

    try:
        profile = run_analysis(scenario, baseline, params, store=store, device=args.device, force=args.force,
                               progress=progress)
    finally:
        if bar is not None:
            bar.close()
    result = {"analysis": profile.to_dict()}
    print(f"sensitivity of {scenario.name} (baseline {baseline.key}), {profile.examples} validation examples, "
          f"accuracy {profile.baseline['accuracy']:.4f}; drops in accuracy points; analysis {profile.analysis_id} "
          f"({profile.status}, {profile.seconds:.0f} s)")
    if profile.pruning:
        rows = [{"group (root)": e["group"], "members": len(e["members"]),
                 **{f"drop@{r['ratio']:.0%}": r["drop_points"] for r in e["results"]}} for e in profile.pruning]
        print("\npruning one coupled group at a time:\n" + format_table(rows))
    if profile.quantization or profile.latency:
        print("\nquantizing one layer at a time (" + params.granularity + "), weight outliers, latency share:\n"
              + format_table(profile.table()))
    if profile.latency:
        lat = profile.latency
        print(f"\nlatency: {lat['total_ms_p50']:.2f} ms per batch of {lat['batch_size']} (fp32), "
              f"{lat['other_ms_p50']:.2f} ms outside the listed layers; {lat['method']}")
    if allocation_args is not None:
        allocation = allocate(profile, bits_options=tuple(parse_list(args.allocate_bits, integer, "allocate bits"))
                              if args.allocate_bits else None, allow_pruning=not args.no_prune,
                              finetune_steps=args.finetune_steps, **allocation_args)
        result["allocation"] = allocation.to_dict()
        print(f"\nallocation ({allocation.objective}; PREDICTED figures, measure the point for real ones): "
              f"{allocation.config.label()}")
        print(format_table([{k: v for k, v in r.items() if k not in ("members",)} for r in allocation.rows
                            if r["kind"] == "layer" or r["prune_ratio"]]))
        pred = allocation.predicted
        print("predicted: " + ", ".join(f"{k.replace('predicted_', '')} {_fmt(v)}" for k, v in pred.items()
                                        if k.startswith("predicted_")))
        for note in allocation.notes:
            print(f"note: {note}")
        if args.measure:
            result["measured"] = _measure_allocation(args, scenario, baseline, store, allocation, params)
    if out_path is not None:
        out_path.write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
        print(f"\nwritten to {out_path}", file=sys.stderr)
    return 0


def _measure_allocation(args, scenario, baseline, store, allocation, params) -> list[dict]:
    """Measure the allocation next to uniform comparators in one sweep (stored like any sweep)."""
    from gemini_core.config import parse_list
    from gemini_core.workflows.sweep import REFERENCE, SweepSpec, run_sweep

    def integer(text):
        return int(str(text))

    ratios = tuple(parse_list(args.compare_ratios, float, "compare ratios"))
    spec = SweepSpec(prune_methods=(params.prune_method,) if any(r > 0 for r in ratios) else ("none",),
                     prune_ratios=ratios, bits=tuple(parse_list(args.compare_bits, integer, "compare bits")),
                     granularities=(params.granularity,), finetune_steps=(args.finetune_steps,),
                     batch_size=int(args.batch_size), allocations=(allocation.config,))
    records = []
    for record in run_sweep(scenario, baseline, spec, store=store, device=args.device,
                            name=args.name or f"{scenario.name} allocation vs uniform"):
        records.append({k: v for k, v in record.items() if k != "traceback"})
    # Points reused from another run come back without a status: they were stored because they were ok.
    reference = next((r for r in records if r.get("config") == REFERENCE.to_dict()
                      and r.get("status", "ok") == "ok"), None)
    rows = []
    for r in records:
        if r.get("status", "ok") != "ok":
            rows.append({"point": r["label"], "status": (r.get("error") or "failed")[:60]})
            continue
        row = {"point": ("ALLOCATION " if r["config"].get("layer_overrides") else "") + r["label"],
               "accuracy": r["accuracy"], "size_bytes": r["size_bytes"], "latency_ms_p50": r["latency_ms_p50"]}
        if reference:
            row["drop_points"] = round((reference["accuracy"] - r["accuracy"]) * 100, 3)
        rows.append(row)
    print(f"\nmeasured on the test split (run {records[0]['run_id'] if records else '-'}):\n" + format_table(rows))
    return records


def cmd_runs(args) -> int:
    from gemini_core.results.store import Store

    for run in Store().runs():
        print(json.dumps({k: run[k] for k in ("run_id", "name", "scenario", "status", "points_ok", "points_failed",
                                               "created_at", "baseline_key")}))
    return 0


def cmd_points(args) -> int:
    from gemini_core.results.store import Store

    store = Store()
    store.get_run(args.run_id)
    points = store.points(args.run_id)
    if args.front:
        from gemini_core.results.pareto import pareto_front

        points = [p for p, on in zip(points, pareto_front(points)) if on]
    for point in points:
        point.pop("traceback", None)
        print(json.dumps(point))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m gemini_core", description="Gemini Compression Studio engine")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train (or load the cached) baseline")
    _add_scenario_args(p)
    _add_adaptive_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="measure a grid of compression configs")
    _add_scenario_args(p)
    p.add_argument("--prune-method", default="none", help="comma list, e.g. l1-structured,2:4")
    p.add_argument("--prune-ratios", default="0", help="comma list in [0, 0.95], e.g. 0,0.25,0.5")
    p.add_argument("--bits", default="32", help="comma list of 32,16,8,6,4,3,2")
    p.add_argument("--granularity", default="per-channel", help="per-tensor, per-channel, group-32/64/128")
    p.add_argument("--execution", default="dense", help="dense, sparse or both")
    p.add_argument("--finetune-steps", default="0", help="recovery steps after pruning (comma list)")
    p.add_argument("--recovery", default="finetune",
                   help="finetune, qat or both (comma list): how the fine-tune steps recover; qat trains against "
                        "the quantized weights, once per bit width and granularity")
    p.add_argument("--batch-size", default="32", help="batch size for latency and memory")
    p.add_argument("--out", help="append points to this JSONL file instead of stdout")
    p.add_argument("--force", action="store_true", help="re-measure points already stored")
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local (this process, default) or ray (one task per pruning setting on a Ray cluster)")
    p.add_argument("--ray-address", help="with --executor ray: auto or HOST:PORT of a running cluster "
                                         "(default: start a local Ray instance sized to this machine)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("sensitivity", help="per-layer sensitivity analysis (and an allocation from it)")
    _add_scenario_args(p)
    p.add_argument("--ratios", default="0.25,0.5,0.75", help="pruning ratios per coupled group (comma list)")
    p.add_argument("--bits", default="8,4,2", help="bit widths per layer (comma list)")
    p.add_argument("--granularity", default="per-channel", help="per-tensor, per-channel, group-32/64/128")
    p.add_argument("--prune-method", default="l2-structured", help="structured method for the pruning profile")
    p.add_argument("--phases", default="pruning,quantization,latency", help="which profiles (comma list)")
    p.add_argument("--max-examples", type=int, default=512, help="validation examples per evaluation")
    p.add_argument("--latency-batch", type=int, default=32, help="batch size of the latency profile")
    p.add_argument("--out", help="write the analysis (and allocation, measured points) as JSON to this file")
    p.add_argument("--force", action="store_true", help="analyse again even if stored")
    p.add_argument("--allocate", help="budget for the allocator: max-drop=POINTS and/or max-loss=NATS (smallest "
                                      "size within them) or speedup=X (optionally with max-drop)")
    p.add_argument("--allocate-bits", help="bit widths the allocator may choose (default: 32 and the profiled ones)")
    p.add_argument("--no-prune", action="store_true", help="the allocator chooses bits only")
    p.add_argument("--finetune-steps", type=int, default=0, help="recovery steps when the allocation prunes")
    p.add_argument("--measure", action="store_true",
                   help="measure the allocation next to uniform points (a stored sweep)")
    p.add_argument("--compare-bits", default="32,8,4", help="uniform bit widths measured next to the allocation")
    p.add_argument("--compare-ratios", default="0", help="uniform pruning ratios measured next to the allocation")
    p.add_argument("--batch-size", default="32", help="batch size for the measured points' latency")
    p.add_argument("--name", help="a name for the measured run")
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("runs", help="list stored runs")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("points", help="print a run's points")
    p.add_argument("run_id")
    p.add_argument("--front", action="store_true",
                   help="only the Pareto front: points no other beats on accuracy, latency and size at once")
    p.set_defaults(func=cmd_points)

    _add_export_commands(sub)
    return parser


def _add_adaptive_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("adaptive training (with --adaptive; --epochs, --lr, --train-batch-size apply to it)")
    g.add_argument("--adaptive", action="store_true",
                   help="adaptive training: LR policy, gradual pruning, validation guard, QAT, early stopping")
    g.add_argument("--lr-policy", help="constant, warmup-cosine (default), one-cycle or adaptive")
    g.add_argument("--target-ratio", type=float, help="pruning ratio to reach while training (default 0)")
    g.add_argument("--prune-method", help="l2-structured (default), l1-structured, taylor-structured, "
                                          "random-structured or none")
    g.add_argument("--schedule", help="cubic (Zhu and Gupta, default) or linear")
    g.add_argument("--start-epoch", type=int, help="pruning starts after this epoch (0-based, default 0)")
    g.add_argument("--end-epoch", type=int, help="the target ratio is reached at the start of this epoch "
                                                 "(default: leaves the last quarter for recovery)")
    g.add_argument("--tolerance", type=float, help="validation accuracy a pruning step may cost (e.g. 0.02); "
                                                   "default: no guard")
    g.add_argument("--guard", help="rollback (default) or slow: what happens to a step that costs more")
    g.add_argument("--patience", type=int, help="early stopping: epochs without improvement once pruned (0: off)")
    g.add_argument("--mask", help="none (default), unstructured (target ratio of weights zeroed) or 2:4")
    g.add_argument("--qat-bits", type=int, help="quantization-aware training at 8, 6, 4, 3 or 2 bits")
    g.add_argument("--qat-granularity", help="per-channel (default), per-tensor, group-32/64/128")
    g.add_argument("--qat-start-epoch", type=int, help="epoch QAT starts (default: when pruning ends)")
    g.add_argument("--init", choices=["scratch", "baseline"], default=None,
                   help="start from scratch (default) or from the scenario's cached baseline")
    g.add_argument("--nproc", type=int, help="train on N processes of this machine (torch.distributed, DDP)")


def _add_export_commands(sub) -> None:
    """Export and evaluate live in export_cli.py so the checkpoint format has one home."""
    from gemini_core.cli.export import add_commands

    add_commands(sub, _add_scenario_args, _scenario_from, _baseline)


def _set_threads(args) -> None:
    from gemini_core.device import compute_threads_for_app, set_compute_threads

    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads {threads} must be at least 1")
    if threads is None and os.environ.get("GEMINI_THREADS"):
        threads = compute_threads_for_app()  # validates the variable
    set_compute_threads(threads)


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # `train --nproc N` launches the same command line on N processes
    try:
        _set_threads(args)
        return args.func(args)
    except GeminiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: finished points are saved; run the same command again to resume", file=sys.stderr)
        return 130
