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
    native_noise_filtered,
    set_threads,
)
from gemini_core.errors import GeminiError

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
        set_threads(args)
        with native_noise_filtered():
            return args.func(args)
    except GeminiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # `points ID | head`: the reader left. No traceback; stdout goes nowhere from here on so the
        # interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted: finished points are saved; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
