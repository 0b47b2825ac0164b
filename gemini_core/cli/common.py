"""What every command shares: the one-line-error parser, the scenario flags, settings flags that mirror a
dataclass, building the scenario and its baseline, progress bars, JSON output."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from tqdm import tqdm

from gemini_core.device import check_device, compute_threads_for_app, max_threads, set_compute_threads
from gemini_core.errors import ConfigError, GeminiError
from gemini_core.limits import MAX_BATCH
from gemini_core.results.record import point_json
from gemini_core.scenarios import get_scenario, scenario_names
from gemini_core.scenarios.base import TrainSettings
from gemini_core.settings_flags import SettingsFlags
from gemini_core.workflows.baselines import load_or_train

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C


class OneLineParser(argparse.ArgumentParser):
    """Bad flags exit 2 with one line, not argparse's usage block."""

    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


TRAIN_FLAGS = SettingsFlags(
    TrainSettings,
    helps={"epochs": "baseline training epochs (at most; early stopping may end sooner)",
           "batch_size": "baseline training batch size",
           "lr": "baseline learning rate", "max_steps": "stop baseline training after this many steps",
           "patience": "early stopping: epochs without a better validation accuracy (0: run every epoch)",
           "threads": "CPU threads training runs on (fixed, part of the cache key, so weights repeat)"},
    # --batch-size is the measurement batch (sweep, export); --threads the measurement threads;
    # --patience adaptive training's.
    flags={"batch_size": "--train-batch-size", "threads": "--train-threads", "patience": "--train-patience"},
    without_flag={"weight_decay": "the scenario's choice", "seed": "fixed, so a baseline's cache key repeats"},
)


# -- the scenario and its baseline -------------------------------------------------------------------------
def add_scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default="digits",
                   help=" | ".join(scenario_names()) + " (default digits)")
    p.add_argument("--data", help="training data file or folder (text, images, tabular, hf:); llm: the "
                   "evaluation text (.txt, .jsonl or a CSV column; default: built-in pydoc text)")
    p.add_argument("--model", help="llm: the causal LM, smollm2 (built in, default) or hf:<local folder> "
                   "(safetensors only, no remote code)")
    p.add_argument("--test-data", help="optional held-out test data (text, hf:, tabular, images: folder or "
                   ".npz): it only tests; --data trains and validates")
    p.add_argument("--text-column", help="text column: header name or 0-based position")
    p.add_argument("--label-column", help="label column: header name or 0-based position")
    p.add_argument("--header", choices=["infer", "yes", "no"], default=None,
                   help="whether the CSV/TSV has a header row (default: infer)")
    p.add_argument("--user-column", help="recommend: the user column of the interaction file (name or position)")
    p.add_argument("--item-column", help="recommend: the item column of the interaction file")
    p.add_argument("--time-column", help="recommend: the time column (the latest interaction per user is held "
                   "out); default: the file's row order")
    p.add_argument("--threshold", help="recommend: ratings at or above this are positives (default: every "
                   "interaction)")
    p.add_argument("--max-train-examples", type=int, help="text: cap on training examples")
    p.add_argument("--max-length", type=int, help="text: tokens per example")
    p.add_argument("--image-size", help="images: HxW to resize to (default: the most common size, at most 64)")
    TRAIN_FLAGS.add_to(p)
    p.add_argument("--retrain", action="store_true", help="train the baseline again even if cached")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: GEMINI_THREADS, else torch's choice, "
                   "one per core); every point records the number it ran with")


def scenario_from(args):
    header = {"yes": True, "no": False, "infer": "infer", None: None}[args.header]
    options = {"data": args.data, "test_data": args.test_data, "text_column": args.text_column,
               "label_column": args.label_column, "header": header,
               "max_train_examples": args.max_train_examples, "max_length": args.max_length,
               "image_size": args.image_size, "model": getattr(args, "model", None),
               "user_column": args.user_column, "item_column": args.item_column, "time_column": args.time_column,
               "threshold": args.threshold}
    return get_scenario(args.scenario, **{k: v for k, v in options.items() if v is not None})


def train_settings(args, scenario) -> TrainSettings:
    """The scenario's baseline settings with the --epochs, --train-batch-size, --lr, --max-steps given."""
    changes = TRAIN_FLAGS.given(args)
    for name, value in changes.items():
        if name == "patience" and value < 0:
            raise GeminiError(f"--train-patience must be 0 or more, got {value}")
        if name not in ("lr", "patience") and value < 1:
            raise GeminiError(f"{TRAIN_FLAGS.flag(name)} must be at least 1, got {value}")
    return dataclasses.replace(scenario.default_train, **changes)


def baseline_from(args, scenario):
    """Train (or load the cached) baseline, with a progress bar on stderr."""
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
        return load_or_train(scenario, train_settings(args, scenario), progress=progress, retrain=args.retrain,
                             device=args.device)
    finally:
        if bar is not None:
            bar.close()


# Whole-number flags and their smallest allowed value (``None`` = not given). Checked before any work.
MIN_INT_FLAGS = {"max_train_examples": 1, "max_length": 2, "batch_size": 1, "latency_batch": 1, "max_examples": 1,
                 "finetune_steps": 0, "nproc": 1, "point_id": 0, "epochs": 1, "max_steps": 1, "train_batch_size": 1}


def check_flags(args) -> None:
    """One line naming the first numeric flag that is NaN, infinite or out of range, and a --device this
    machine lacks; called before anything is read or trained."""
    import math

    for name, value in sorted(vars(args).items()):
        flag = "--" + name.replace("_", "-")
        if isinstance(value, float) and not isinstance(value, bool) and not math.isfinite(value):
            raise ConfigError(f"{flag} {value} is not a finite number")
        if isinstance(value, int) and not isinstance(value, bool) and name in MIN_INT_FLAGS:
            if value < MIN_INT_FLAGS[name]:
                raise ConfigError(f"{flag} must be at least {MIN_INT_FLAGS[name]}, got {value}")
            if "batch" in name and value > MAX_BATCH:
                raise ConfigError(f"{flag} {value} is above the limit of {MAX_BATCH:,}")
    lr = getattr(args, "lr", None)
    if isinstance(lr, float) and not 0 < lr <= 10:
        raise ConfigError(f"--lr {lr} must be above 0 and at most 10")
    if getattr(args, "device", None):
        check_device(args.device)


def set_threads(args) -> None:
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads {threads} must be at least 1")
    if threads is not None and threads > max_threads():
        raise ConfigError(f"--threads {threads} is more than this machine can use (at most {max_threads()}; "
                          f"it has {os.cpu_count()} cores)")
    if threads is None and os.environ.get("GEMINI_THREADS"):
        threads = compute_threads_for_app()  # validates the variable
    set_compute_threads(threads)


# -- output ------------------------------------------------------------------------------------------------
def print_json(record: dict, file=None) -> None:
    """One JSON object on one line (stdout unless ``file``); numpy floats and the like as floats."""
    print(json.dumps(record, default=float), file=file or sys.stdout, flush=True)


def print_point(record: dict, file=None) -> None:
    """One point record as one JSON line, through the point record's schema (``results.record``): the
    record's fields plus ``schema_version``, ``kind`` and ``quality_metric``, so a reader of the lines knows
    what each holds without guessing from its fields."""
    print(point_json(record), file=file or sys.stdout, flush=True)


def note(message: str) -> None:
    """A progress or warning line on stderr (stdout carries the JSON)."""
    print(message, file=sys.stderr, flush=True)


def format_value(value) -> str:
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
    cells = [[format_value(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


