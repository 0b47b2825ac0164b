"""1. Size: the exported ``model.safetensors`` against the ideal size and against fp32, per bit width.

Each point is compressed with ``compress`` and written with ``export_compressed`` (the exporter the
product uses); the figure is the byte count of the file on disk. Sizes are exact, so there is no
repeat spread: one export per point, checked against ``CompressedModel.storage()``.
"""
from __future__ import annotations

import time

from .common import Context, digits, environment, finish_environment, log, scratch_dir, target, text_model

TITLE = "Size: exported file vs ideal and vs fp32"
TARGET_RATIO = 1.05


def _points(ctx: Context, text: bool) -> list[tuple[int, str]]:
    points = [(32, "per-channel"), (16, "per-channel"), (8, "per-channel"), (6, "per-channel"),
              (4, "per-channel"), (3, "per-channel"), (2, "per-channel")]
    if text and not ctx.quick:  # group-wise grids: more scales, the common choice below 8 bits
        points += [(4, "group-32"), (3, "group-32"), (2, "group-32")]
    return points


def _measure_model(ctx: Context, name: str, scenario, model, baseline, text: bool) -> list[dict]:
    from gemini_core.compress import compress
    from gemini_core.config import CompressionConfig
    from gemini_core.kinds.classifier.export import export_compressed

    rows, fp32_file = [], None
    export = not (text and ctx.quick)
    with scratch_dir(ctx, "size-") as tmp:
        for bits, granularity in _points(ctx, text):
            config = CompressionConfig(bits=bits, granularity=granularity)
            t0 = time.perf_counter()
            compressed = compress(model, config, scenario, device="cpu")
            storage_bytes = len(compressed.storage())
            if export:
                record = {"config": config.to_dict(), "label": config.label(), "backend": compressed.backend}
                out = export_compressed(compressed, scenario, baseline, tmp / f"{bits}-{granularity}", record=record,
                                        formats=("gemini",), measure=False)
                file_bytes = (out / "model.safetensors").stat().st_size
            else:  # quick runs of the large model: the bytes export_compressed would write, not written
                file_bytes = storage_bytes
            ideal = compressed.ideal_size_bytes()
            if bits == 32:
                fp32_file = file_bytes
            rows.append({"model": name, "bits": bits, "granularity": granularity if bits <= 8 else "-",
                         "file_bytes": file_bytes, "storage_bytes": storage_bytes,
                         "file_matches_storage": (file_bytes == storage_bytes) if export else None,
                         "exported": export, "ideal_bytes": ideal,
                         "file_over_ideal": file_bytes / ideal, "fp32_file_bytes": fp32_file,
                         "reduction_vs_fp32": fp32_file / file_bytes,
                         "params": sum(p.numel() for p in compressed.stored_model.parameters()),
                         "seconds": round(time.perf_counter() - t0, 2)})
            log(f"size {name} {config.label()}: {file_bytes:,} B, {file_bytes / ideal:.4f}x ideal")
            del compressed
    return rows


def run(quick: bool = False, ctx: Context | None = None) -> dict:
    from .common import make_context

    ctx = ctx or make_context(quick=quick)
    started = time.perf_counter()
    env = environment(ctx)
    result = {"section": "size", "title": TITLE, "mode": ctx.mode, "env": env, "notes": []}
    scenario, baseline = digits(ctx)
    rows = _measure_model(ctx, "digits CNN", scenario, baseline.model, baseline, text=False)
    text_info = None
    if ctx.tiny:
        result["notes"].append("tiny profile: MiniLM skipped (digits only)")
    else:
        found = text_model(ctx)
        if found is None:
            result["notes"].append("no text data found (../shared/data): MiniLM skipped")
        else:
            t_scenario, t_model, text_info, t_baseline = found
            rows += _measure_model(ctx, "MiniLM", t_scenario, t_model, t_baseline, text=True)
    result["rows"] = rows
    result["text_model"] = text_info
    result["notes"] += [
        "file = bytes of model.safetensors written by export_compressed (equal to CompressedModel.storage()).",
        "ideal = stored weights x bits / 8 + fp16 scales + uint8 zero-points + other tensors at their width "
        "(ideal_size_bytes, an estimate); file / ideal is the format's overhead (header, layout JSON).",
        "Sizes are exact byte counts: one measurement, no repeat spread.",
        "Quick profile: MiniLM's bytes are CompressedModel.storage() (what the exporter writes) without writing "
        "the folder; full runs export every point and check the file against storage().",
        "Every weight (embeddings included) is quantized at the bit width; biases and norms stay fp32 "
        "(bf16 at 16 bits).",
    ]
    text_rows = [r for r in rows if r["model"] == "MiniLM"]
    if text_rows:
        worst = max(text_rows, key=lambda r: r["file_over_ideal"])
        met = worst["file_over_ideal"] <= TARGET_RATIO
        result["targets"] = [target(
            "Size overhead", f"file <= {TARGET_RATIO}x ideal at every bit width (MiniLM)",
            f"worst {worst['file_over_ideal']:.4f}x ({worst['bits']}-bit {worst['granularity']})", met,
            "" if met else "format overhead above the target at this bit width", value=worst["file_over_ideal"])]
    else:
        worst = max(rows, key=lambda r: r["file_over_ideal"])
        result["targets"] = [target(
            "Size overhead", f"file <= {TARGET_RATIO}x ideal at every bit width (MiniLM)",
            f"MiniLM not measured in this run (digits worst {worst['file_over_ideal']:.3f}x)", None,
            "MiniLM skipped")]
    result["tables"] = [{
        "title": "Exported size per bit width",
        "columns": [("model", "model", "s"), ("bits", "bits", "d"), ("granularity", "granularity", "s"),
                    ("file_bytes", "file (bytes)", ",d"), ("ideal_bytes", "ideal (bytes, estimate)", ",d"),
                    ("file_over_ideal", "file / ideal", ".4f"), ("reduction_vs_fp32", "smaller than fp32 file", ".2f"),
                    ("file_matches_storage", "file == storage()", "s")],
        "rows": rows}]
    result["env"] = finish_environment(env, started)
    return result
