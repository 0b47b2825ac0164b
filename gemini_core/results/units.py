"""How figures are written for a reader: one place for the pages, the model card, the CLI and the HTML report.

Sizes are binary everywhere: 1 KB = 1024 bytes, 1 MB = 1024 KB, 1 GB = 1024 MB (the points table's
``size_kb`` is ``size_bytes / 1024`` too), so one file reads the same on every screen. Every figure keeps
about three significant digits: enough to compare, never a row of noise digits or an exponent.
"""
from __future__ import annotations

import math

BYTES_PER_KB = 1024
SIZE_UNITS = ("KB", "MB", "GB", "TB")
SIZE_NOTE = "1 KB = 1024 bytes, 1 MB = 1024 KB"


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _three_digits(value: float) -> str:
    """12.3, 4.56, 123, 0.123: about three significant digits, no exponent."""
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def size_text(n_bytes) -> str:
    """'812 B', '16.0 KB', '86.7 MB', '1.20 GB' (binary units); '–' when unknown."""
    n = _number(n_bytes)
    if not math.isfinite(n):
        return "–"
    if abs(n) < BYTES_PER_KB:
        return f"{n:.0f} B"
    for unit in SIZE_UNITS:
        n /= BYTES_PER_KB
        if abs(n) < BYTES_PER_KB or unit == SIZE_UNITS[-1]:
            return f"{_three_digits(n)} {unit}"
    raise AssertionError("unreachable")  # the loop returns at its last unit


def duration_text(ms) -> str:
    """'0.412 ms', '12.3 ms', '10.2 s', '3.4 min' (from milliseconds); '–' when unknown."""
    t = _number(ms)
    if not math.isfinite(t):
        return "–"
    if abs(t) < 1000:
        return f"{_three_digits(t)} ms"
    if abs(t) < 120_000:
        return f"{_three_digits(t / 1000)} s"
    return f"{t / 60_000:.1f} min"


def percent_text(pct) -> str:
    """'0.25%', '4.5%', '37%', '1,200%' (a value already in percent); '–' when unknown."""
    p = _number(pct)
    if not math.isfinite(p):
        return "–"
    size = abs(p)
    return f"{p:.2f}%" if size < 1 else f"{p:.1f}%" if size < 10 else f"{p:,.0f}%"


def ratio_text(ratio) -> str:
    """'4.50x', '12.3x', '150x'; '–' when unknown."""
    r = _number(ratio)
    return f"{_three_digits(r)}x" if math.isfinite(r) else "–"


def over_bound_text(share) -> str:
    """How far a figure is over its bound, ``share`` of the bound: 'by 34%', or '3,347 times its bound' once a
    percentage stops meaning anything to a reader (ten times the bound and more)."""
    s = _number(share)
    if not math.isfinite(s):
        return "by an unknown amount"
    if s < 9:
        return f"by {percent_text(s * 100)}"
    return f"at {_three_digits(1 + s)} times its bound"
