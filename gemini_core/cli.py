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

from .errors import ConfigError, GeminiError

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
    from .scenarios import get_scenario

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

    from .train import get_baseline

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
    from .adaptive import AdaptiveSettings

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

    from . import distributed
    from .adaptive import train_adaptive

    scenario = _scenario_from(args)
    settings = _adaptive_settings(args, scenario)  # bad flags fail here, before any process starts
    if args.nproc is not None and args.nproc < 1:
        raise GeminiError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc and args.nproc > 1 and not distributed.in_worker():
        return distributed.launch(args.argv, args.nproc)
    device = args.device
    if distributed.in_worker():
        device = distributed.init_worker(args.device)
    from .adaptive import dist_info

    rank, _ = dist_info()
    init = None
    if args.init == "baseline":
        import torch.distributed as dist

        from .train import get_baseline

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

    from .store import Store
    from .sweep import SweepSpec, run_sweep

    spec = SweepSpec.from_strings(args.prune_method, args.prune_ratios, args.bits, args.granularity,
                                  args.execution, args.finetune_steps, args.batch_size, args.recovery)
    from .measure import memory_cap_bytes

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
        from .ray_executor import cluster_summary, connect

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


def cmd_runs(args) -> int:
    from .store import Store

    for run in Store().runs():
        print(json.dumps({k: run[k] for k in ("run_id", "name", "scenario", "status", "points_ok", "points_failed",
                                               "created_at", "baseline_key")}))
    return 0


def cmd_points(args) -> int:
    from .store import Store

    store = Store()
    store.get_run(args.run_id)
    for point in store.points(args.run_id):
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

    p = sub.add_parser("runs", help="list stored runs")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("points", help="print a run's points")
    p.add_argument("run_id")
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
    from .export_cli import add_commands

    add_commands(sub, _add_scenario_args, _scenario_from, _baseline)


def _set_threads(args) -> None:
    from .device import compute_threads_for_app, set_compute_threads

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
