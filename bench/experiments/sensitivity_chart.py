"""``python -m bench.experiments.sensitivity_chart``: the allocator's points next to uniform ones, from the JSON the
``sensitivity --allocate ... --measure --out`` commands wrote (see README, "Sensitivity and per-layer
compression"). Writes docs/sensitivity_allocation.html (and .png when kaleido + Chromium are present)
and prints, per scenario, the allocation against the best uniform point at equal or nearest size.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"
PANELS = {"digits (SmallCNN)": ("sensitivity_digits.json",),
          "MiniLM on SMS spam": ("sensitivity_minilm_int8.json", "sensitivity_minilm_size.json",
                                 "sensitivity_minilm_int8_ffn_fp32.json")}


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from gemini_core.charts.images import figure_html, figure_png, png_unavailable_reason
    from gemini_core.charts.sensitivity import best_uniform_near, fig_allocation_vs_uniform

    panels = {}
    for name, files in PANELS.items():
        by_config: dict = {}
        for file in files:
            path = RESULTS / file
            if not path.exists():
                print(f"{file}: missing, left out", file=sys.stderr)
                continue
            for r in json.loads(path.read_text())["measured"]:
                if file.endswith("_ffn_fp32.json") and r["config"].get("layer_overrides"):
                    r["legend"] = "per-layer by hand (FFN down-proj fp32)"  # not the allocator's choice
                if r.get("status", "ok") == "ok":
                    by_config[json.dumps(r["config"], sort_keys=True)] = r  # a point in two files counts once
        if by_config:
            panels[name] = list(by_config.values())
    if not panels:
        print("no results to draw", file=sys.stderr)
        return 1
    for name, records in panels.items():
        ref = next(r for r in records if r["label"] == "unpruned / 32-bit / dense")
        for alloc in (r for r in records if r["config"].get("layer_overrides")):
            kind = r"by hand" if alloc.get("legend") else "allocation"
            best = best_uniform_near(records, alloc["size_bytes"])
            print(f"{name}: {kind} {alloc['accuracy']:.4f} at {alloc['size_bytes']:,} B "
                  f"(drop {100 * (ref['accuracy'] - alloc['accuracy']):.2f} pts) vs best uniform "
                  f"{best['label']!r} {best['accuracy']:.4f} at {best['size_bytes']:,} B "
                  f"(drop {100 * (ref['accuracy'] - best['accuracy']):.2f} pts)")
    fig = fig_allocation_vs_uniform(panels, "Per-layer allocation (star) vs uniform points; dotted: best uniform "
                                            "point at equal or nearest size")
    DOCS.mkdir(exist_ok=True)
    # plotly.js from its CDN keeps the file small; the PNG is the self-contained copy
    (DOCS / "sensitivity_allocation.html").write_text(figure_html(fig, include_plotlyjs="cdn"), encoding="utf-8")
    reason = png_unavailable_reason()
    if reason is None:
        try:
            (DOCS / "sensitivity_allocation.png").write_bytes(figure_png(fig, width=1200, height=480))
        except RuntimeError as exc:
            print(f"PNG skipped: {exc}", file=sys.stderr)
    else:
        print(f"PNG skipped: {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
