"""Torch's profiler (kineto) writes start/stop lines from C++ straight to file descriptor 2, past Python and any
setting; the memory measurement uses that profiler. This filter drops those lines and lets everything else
through: the CLI wraps each command in it, the dashboard's server keeps it for its whole life."""
from __future__ import annotations

import contextlib
import os
import sys
import threading

NATIVE_NOISE = (b"USDT:", b"STAGE:")  # torch's profiler (kineto) start/stop lines, written by C++ to fd 2


@contextlib.contextmanager
def native_noise_filtered():
    """Drop the profiler's ``USDT:`` / ``STAGE:`` lines from stderr (the memory measurement uses the torch
    profiler, whose C++ side writes them straight to file descriptor 2, past Python and any env setting).

    Everything else (tqdm bars, notes, errors) passes through as it comes: a segment is held back only while
    it could still be the start of a noise line."""
    try:
        original = os.dup(2)
    except OSError:
        yield
        return
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        pending, passing = b"", False
        while True:
            try:
                chunk = os.read(read_end, 65536)
            except OSError:
                break
            if not chunk:
                break
            if passing and any(chunk.startswith(n) or n.startswith(chunk[:len(n)]) for n in NATIVE_NOISE):
                passing = False  # a noise line written right after an unterminated tqdm bar
            pending += chunk
            out = b""
            while pending:
                cut = min((i for i in (pending.find(b"\n"), pending.find(b"\r")) if i >= 0), default=-1)
                if cut < 0:  # an unterminated segment
                    if passing or not any(n.startswith(pending[:len(n)]) for n in NATIVE_NOISE):
                        out += pending
                        pending, passing = b"", True
                    break
                segment, pending = pending[:cut + 1], pending[cut + 1:]
                if passing or not segment.startswith(NATIVE_NOISE):
                    out += segment
                passing = False
            if out:
                os.write(original, out)
        if pending and not pending.startswith(NATIVE_NOISE):
            os.write(original, pending)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the pump drains and stops
        thread.join(5)
        os.close(read_end)
        os.close(original)


_PROCESS_FILTER: list = []  # the entered filter of a long-running process (kept referenced: never finalised)
_PROCESS_LOCK = threading.Lock()


def filter_native_noise_for_process() -> None:
    """Keep the filter on fd 2 until the process ends (idempotent): for a server, whose jobs measure from
    threads at any time. A command line uses ``native_noise_filtered`` around its work instead."""
    with _PROCESS_LOCK:
        if _PROCESS_FILTER:
            return
        entered = native_noise_filtered()
        entered.__enter__()
        _PROCESS_FILTER.append(entered)
