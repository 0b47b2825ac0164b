"""``python -m gemini_core ...`` (or ``gemini ...``): argument parsing only; every command calls engine functions.

One module per command (``train``, ``sweep``, ``sensitivity``, ``results``: runs and points, ``export``:
export and evaluate), each with ``add_parser(subparsers)`` and ``run(args) -> int``. JSON goes to stdout
(one object per line for points); progress goes to stderr; bad input exits with status 2 and one line
naming the problem.
"""
from __future__ import annotations

import argparse
import os
import sys

from gemini_core.cli import export, results, sensitivity, sweep, train
from gemini_core.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    OneLineParser,
    check_flags,
    set_threads,
)
from gemini_core.errors import ConfigError, GeminiError
from gemini_core.fsio import clean_stale, explain_os_error
from gemini_core.native_noise import native_noise_filtered
from gemini_core.paths import check_home_writable
from gemini_core.results.store import Store

# Commands that write under the home folder, and those that read or write the run store.
WRITERS = ("train", "sweep", "sensitivity", "export")
STORE_USERS = ("sweep", "sensitivity", "points", "runs", "show")

COMMANDS = (train, sweep, sensitivity, results, export)  # in the order --help lists them

__all__ = ["EXIT_BAD_INPUT", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m gemini_core", description="Gemini Compression Studio engine")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    """Run one command line (``sys.argv[1:]`` by default); its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # `train --nproc N` launches the same command line on N processes
    try:
        check_flags(args)
        set_threads(args)
        preflight(args)
        with native_noise_filtered():
            return args.func(args)
    except GeminiError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # before OSError, of which it is a kind
        # `points ID | head`: the reader left. No traceback; stdout goes nowhere from here on so the
        # interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a full disk, a read-only home: one line, not a traceback
        message = explain_os_error(exc, f"saving the files of `{args.command}`")
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print(f"error: {args.command} ran out of memory; use smaller data, a smaller model or a smaller batch",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: finished points are saved; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def preflight(args) -> None:
    """Before any data is read or model trained: a writable home (for commands that write), temporary
    folders of killed processes removed, and the run store readable (a corrupt store is reported now,
    not after a baseline has trained)."""
    if args.command in WRITERS:
        home = check_home_writable()
        for folder in (home, home / "baselines", home / "exports"):
            clean_stale(folder)
        out = getattr(args, "out", None)
        if out and args.command in ("sweep", "sensitivity"):
            _check_out_file(out)
    if args.command in STORE_USERS or (args.command == "export" and getattr(args, "point_id", None) is not None):
        Store().check()


def _check_out_file(out) -> None:
    """``--out`` of sweep / sensitivity is a file to append JSON lines to."""
    import os
    from pathlib import Path

    path = Path(out).expanduser()
    if path.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name for the JSON lines")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"--out {out} is not writable")
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        raise ConfigError(f"--out {out}: the folder {path.parent} is not writable")
