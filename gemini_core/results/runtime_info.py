"""What a point says about how it ran: runtime, CPU, calibration and the ``auto`` choice, as plain rows.

The pages show these (the record panel on Overview/Sweep, the Export page); they are built here, from
the stored record alone, so a page only lays them out. Nothing is re-measured.

- ``calibration_summary``: static int8 points record how they were calibrated (``runtime.calibration``:
  method, examples, batches) and the effect on validation accuracy (``runtime.calibration_effect``:
  before -> after with a verdict); ``hurt`` is True when the verdict says calibration hurt accuracy.
- ``auto_choice_rows`` / ``auto_choice_reason``: every candidate ``--execution auto`` timed, which one
  was kept and why (a candidate within the tolerance of the reference's validation accuracy whose paired
  timings put it ahead of the reference beyond their interval, twice; else the reference).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

HURT = "calibration hurt accuracy"


def _dict(value) -> dict | None:
    return dict(value) if isinstance(value, Mapping) else None


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def runtime_summary(record: Mapping) -> dict | None:
    """Runtime, precision, threads, file bytes and the CPU the point ran on; None for plain torch points."""
    runtime = _dict(record.get("runtime"))
    if runtime is None:
        return None
    return {"runtime": runtime.get("runtime"), "precision": runtime.get("precision"),
            "inference_precision": runtime.get("inference_precision"), "threads": runtime.get("threads"),
            "runtime_file_bytes": runtime.get("size_bytes"), "build_seconds": runtime.get("build_seconds"),
            "cpu": record.get("cpu") if isinstance(record.get("cpu"), str) else None,
            "cpu_flags": [str(f) for f in record.get("cpu_flags")] if isinstance(record.get("cpu_flags"), (list, tuple))
            else []}


def calibration_summary(record: Mapping) -> dict | None:
    """How the point's runtime was calibrated and what it did to validation accuracy; None when not calibrated."""
    runtime = _dict(record.get("runtime")) or {}
    calibration, effect = _dict(runtime.get("calibration")), _dict(runtime.get("calibration_effect"))
    if effect is None and (calibration is None or not calibration.get("examples")):
        return None
    calibration = calibration or {}
    effect = effect or {}
    before, after = _number(effect.get("accuracy_before")), _number(effect.get("accuracy_after"))
    delta = _number(effect.get("delta_points"))
    if delta is None and before is not None and after is not None:
        delta = (after - before) * 100
    verdict = effect.get("verdict")
    return {"method": calibration.get("method") or "–", "calibration_examples": calibration.get("examples"),
            "calibration_batches": calibration.get("batches"), "split": effect.get("split"),
            "split_examples": effect.get("examples"), "accuracy_before": before, "accuracy_after": after,
            "delta_points": delta, "verdict": verdict, "hurt": verdict == HURT}


def auto_choice(record: Mapping) -> dict | None:
    """The ``auto`` execution's record (top level, or kept beside a converted runtime's record)."""
    return _dict(record.get("auto_choice"))


def auto_choice_rows(record: Mapping) -> list[dict]:
    """One row per candidate ``auto`` timed, fastest first, the kept one marked."""
    choice = auto_choice(record)
    if choice is None:
        return []
    rows = []
    for name, cand in (choice.get("candidates") or {}).items():
        cand = _dict(cand) or {}
        rows.append({"candidate": name, "kept": name == choice.get("chosen"),
                     "reference": name == choice.get("reference"),
                     "validation_accuracy": _number(cand.get("accuracy")),
                     "accuracy_delta_pts": _number(cand.get("accuracy_delta_pts")),
                     "within_tolerance": bool(cand.get("within_tolerance")),
                     "latency_ms_p50": _number(cand.get("latency_ms_p50")),
                     "latency_ms_p10": _number(cand.get("latency_ms_p10")),
                     "latency_ms_p90": _number(cand.get("latency_ms_p90")),
                     "speedup_vs_reference": _number(cand.get("speedup_vs_reference")),
                     "speedup_interval": cand.get("speedup_interval"),
                     "beats_reference": cand.get("beats_reference"),
                     "error": cand.get("error")})
    return sorted(rows, key=lambda r: (r["latency_ms_p50"] is None, r["latency_ms_p50"] or 0.0))


def auto_choice_reason(record: Mapping) -> str | None:
    """One sentence: which candidate was kept, why, and why each faster one was not."""
    choice = auto_choice(record)
    rows = auto_choice_rows(record)
    if choice is None or not rows:
        return None
    kept = next((r for r in rows if r["kept"]), None)
    if kept is None:
        return f"auto kept {choice.get('chosen')!r}, which has no timing in the record"
    tolerance = _number(choice.get("tolerance_points"))
    reference = choice.get("reference")
    if kept["candidate"] == reference and len(rows) > 1:  # the reference is kept unless something beat it
        text = (f"auto kept {reference}, the reference, over {len(rows) - 1} other candidates "
                f"(p50 {kept['latency_ms_p50']:.3f} ms")
    else:
        text = (f"auto kept {kept['candidate']}: the fastest of {len(rows)} candidates "
                f"(p50 {kept['latency_ms_p50']:.3f} ms")
    if kept["speedup_vs_reference"] is not None and kept["candidate"] != reference:
        text += f", {kept['speedup_vs_reference']:.2f}x {reference}"
    text += (f") within {tolerance:g} validation points of {reference}"
             if tolerance is not None and kept["candidate"] != reference else ")")
    skipped = []
    confirmation = _dict(choice.get("confirmation")) or {}
    not_confirmed = confirmation.get("candidate") if confirmation.get("confirmed") is False else None
    for row in rows:
        if row["kept"]:
            break  # rows are fastest first: only the faster ones need a reason
        if row["error"]:
            skipped.append(f"{row['candidate']} failed ({row['error']})")
        elif not row["within_tolerance"]:
            skipped.append(f"{row['candidate']} was faster but lost {-(row['accuracy_delta_pts'] or 0):.2f} points")
        elif row["candidate"] == not_confirmed:
            low, high = confirmation.get("speedup_interval") or [None, None]
            skipped.append(f"{row['candidate']} was not ahead when timed again (speed-up interval "
                           f"{_interval(low, high)})")
        elif row["speedup_interval"] is not None and not row["beats_reference"]:
            skipped.append(f"{row['candidate']} was faster by median but its speed-up interval "
                           f"{_interval(*row['speedup_interval'])} reaches 1")
    failed = [f"{r['candidate']} failed ({r['error']})" for r in rows if r["error"] and r["latency_ms_p50"] is None]
    skipped += [f for f in failed if f not in skipped]
    decided = f" Decided by {choice['decided_by']}." if choice.get("decided_by") else ""
    check = _dict(record.get("auto_check")) or {}
    if check.get("verdict") and check.get("speedup_interval"):  # timed again against torch after the sweep
        decided += (f" Timed again after the sweep: {check['verdict']} at the same storage "
                    f"({_interval(*check['speedup_interval'])}).")
    return text + (f"; not kept: {'; '.join(skipped)}" if skipped else "") + "." + decided


def _interval(low, high) -> str:
    low, high = _number(low), _number(high)
    return "unknown" if low is None or high is None else f"{low:.2f}x to {high:.2f}x"
