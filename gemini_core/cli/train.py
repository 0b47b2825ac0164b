"""``train``: train (or load the cached) baseline; ``train --adaptive``: adaptive training, on ``--nproc``
processes through torchrun when asked (each torchrun worker runs this same command)."""
from __future__ import annotations

import dataclasses
import sys

from tqdm import tqdm

from gemini_core.adaptive.settings import AdaptiveSettings
from gemini_core.adaptive.train import train_adaptive
from gemini_core.cli.common import (
    SettingsFlags,
    add_scenario_args,
    baseline_from,
    print_json,
    scenario_from,
    train_settings,
)
from gemini_core.errors import GeminiError
from gemini_core.scenarios.base import TrainSettings
from gemini_core.training import distributed
from gemini_core.training.baseline import get_baseline

# AdaptiveSettings fields taken from the scenario's baseline settings (and the baseline flags).
FROM_TRAIN_SETTINGS = tuple(f.name for f in dataclasses.fields(TrainSettings)
                            if f.name in {g.name for g in dataclasses.fields(AdaptiveSettings)}
                            and f.name != "patience")  # adaptive's --patience counts once pruned
ADAPTIVE_FLAGS = SettingsFlags(
    AdaptiveSettings,
    helps={
        "lr_policy": "constant, warmup-cosine (default), one-cycle or adaptive",
        "target_ratio": "pruning ratio to reach while training (default 0)",
        "prune_method": "l2-structured (default), l1-structured, taylor-structured, random-structured or none",
        "schedule": "cubic (Zhu and Gupta, default) or linear",
        "start_epoch": "pruning starts after this epoch (0-based, default 0)",
        "end_epoch": "the target ratio is reached at the start of this epoch "
                     "(default: leaves the last quarter for recovery)",
        "tolerance": "validation accuracy a pruning step may cost (e.g. 0.02); default: no guard",
        "guard": "rollback (default) or slow: what happens to a step that costs more",
        "patience": "early stopping: epochs without improvement once pruned (0: off)",
        "mask": "none (default), unstructured (target ratio of weights zeroed) or 2:4",
        "qat_bits": "quantization-aware training at 8, 6, 4, 3 or 2 bits",
        "qat_granularity": "per-channel (default), per-tensor, group-32/64/128",
        "qat_start_epoch": "epoch QAT starts (default: when pruning ends)",
    },
    without_flag={name: "the baseline's setting (TrainSettings), changed by --epochs, --lr, --train-batch-size, "
                        "--max-steps, --train-threads" for name in FROM_TRAIN_SETTINGS},
)
# Flags that mean nothing without --adaptive.
ADAPTIVE_ONLY = ("nproc", *ADAPTIVE_FLAGS.helps, "init")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train (or load the cached) baseline")
    add_scenario_args(p)
    g = p.add_argument_group("adaptive training (with --adaptive; --epochs, --lr, --train-batch-size apply to it)")
    g.add_argument("--adaptive", action="store_true",
                   help="adaptive training: LR policy, gradual pruning, validation guard, QAT, early stopping")
    ADAPTIVE_FLAGS.add_to(g)
    g.add_argument("--init", choices=["scratch", "baseline"], default=None,
                   help="start from scratch (default) or from the scenario's cached baseline")
    g.add_argument("--nproc", type=int, help="train on N processes of this machine (torch.distributed, DDP)")
    p.set_defaults(func=run)


def run(args) -> int:
    if distributed.in_worker() and not args.adaptive:
        raise GeminiError("distributed workers run `train --adaptive ...`")
    if args.adaptive:
        return run_adaptive(args)
    for name in ADAPTIVE_ONLY:
        if getattr(args, name) is not None:
            raise GeminiError(f"--{name.replace('_', '-')} is an adaptive-training flag: add --adaptive")
    scenario = scenario_from(args)
    baseline = baseline_from(args, scenario)
    for line in training_curve_lines(baseline.history):
        print(line, file=sys.stderr)
    print_json(baseline.describe())
    return 0


def training_curve_lines(history: list[dict]) -> list[str]:
    """The training curve as text: one line per epoch (the kept one marked), then the epoch chosen and why."""
    chosen = next((h for h in reversed(history or []) if h.get("event") == "chosen"), None)
    lines = []
    for h in history or []:
        if h.get("event", "epoch") != "epoch":
            continue
        mark = "  <- kept" if chosen is not None and h["epoch"] == chosen["epoch"] else ""
        lines.append(f"epoch {h['epoch']:>3}/{h['epochs']}: train loss {h['train_loss']:.4f}, "
                     f"val accuracy {h['val_accuracy'] * 100:.2f}%, lr {h['lr']:.2e}, {h['seconds']:.0f} s{mark}")
    if chosen is not None:
        lines.append(f"kept epoch {chosen['epoch']} of {chosen['epochs_run']} run (val accuracy "
                     f"{chosen['val_accuracy'] * 100:.2f}%); stopped: {chosen['stopped']}")
    return lines


def adaptive_settings(args, scenario) -> AdaptiveSettings:
    """The adaptive flags given, on top of the baseline flags (--epochs etc., checked here)."""
    train = train_settings(args, scenario)
    shared = {name: getattr(train, name) for name in FROM_TRAIN_SETTINGS}
    return AdaptiveSettings(**shared, **ADAPTIVE_FLAGS.given(args))


def run_adaptive(args) -> int:
    scenario = scenario_from(args)
    settings = adaptive_settings(args, scenario)  # bad flags fail here, before any process starts
    if args.nproc is not None and args.nproc < 1:
        raise GeminiError(f"--nproc must be at least 1, got {args.nproc}")
    if not distributed.in_worker():
        if args.nproc and args.nproc > 1:
            return distributed.launch(args.argv, args.nproc)
        return _train_adaptive(args, scenario, settings, args.device)
    try:  # a torchrun worker: one rank of the process group
        return _train_adaptive(args, scenario, settings, distributed.init_worker(args.device))
    finally:
        distributed.shutdown_worker()


def _train_adaptive(args, scenario, settings, device) -> int:
    init = None
    if args.init == "baseline":
        init = distributed.main_process_first(lambda: get_baseline(scenario, device=device))
    is_main = distributed.is_main_process()  # rank 0 alone draws progress and prints the result
    progress, close = _adaptive_progress(scenario) if is_main else (None, lambda: None)
    try:
        baseline = train_adaptive(scenario, settings, progress=progress, device=device, init=init,
                                  retrain=args.retrain)
    finally:
        close()
    if is_main and baseline is not None:
        print_json({**baseline.describe(), "summary": baseline.summary or {}})
    return 0


def _adaptive_progress(scenario):
    """(progress callback drawing a bar and one line per epoch on stderr, close)."""
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
            bar.write(_epoch_line(event), file=sys.stderr)
        elif kind == "early_stop" and bar is not None:
            bar.write(f"early stop after epoch {event['epoch']} (best: epoch {event['best_epoch']})", file=sys.stderr)
        elif kind == "cached":
            print(f"adaptive baseline {event['baseline_key']} loaded from the cache", file=sys.stderr)

    def close():
        if bar is not None:
            bar.close()

    return progress, close


def _epoch_line(event) -> str:
    return (f"epoch {event['epoch']}/{event['epochs']}: loss {event['train_loss']:.4f}, val "
            f"{event['val_accuracy']:.4f}, lr {event['lr']:.2e}, params {event['params']:,}, "
            f"MACs {event['macs']:,}, ratio {event['prune_ratio_now']:.3f}"
            + (" (rolled back)" if event["rolled_back"] else ""))
