"""3. Precision backends on MiniLM: fp32, bf16, int8 kernels, weight-only int4.

Each backend is what ``compress`` builds for that bit width (the backend string it reports is
recorded): 16 bits run in bf16, 8 bits per-channel run torch's dynamically quantized int8 Linear
fed with the engine's own codes, 4 bits group-32 are stored packed and run dequantized in fp32.
Accuracy is on the held-out test split; latency is interleaved, at batch 1 and 32.

The same model also runs on the converted runtimes (``bench.runtimes.runtime_section``: ONNX Runtime fp32 and
static int8, OpenVINO fp32 / bf16 / int8 / int4 weights), timed interleaved with torch fp32 at batch 32, beside
the peers: the same model compressed by hand with each runtime's documented recipe (ONNX Runtime
``quantize_static``, NNCF ``quantize``), so each product row is also a ratio against what a user gets without
the product. The CPU model and its instruction-set flags are recorded with the rows.
"""
from __future__ import annotations

import time

from . import runtimes as runtime_bench
from .common import (
    Context,
    digits,
    environment,
    finish_environment,
    fmt_x,
    interleaved_latency,
    log,
    target,
    text_model,
)

TITLE = "Precision backends: fp32 vs bf16 vs int8 vs weight-only int4"
TARGET_SPEEDUP = 2.0
TARGET_DROP_PTS = 1.0


def _variants():
    from gemini_core.config import CompressionConfig

    return {"fp32": CompressionConfig(),
            "bf16": CompressionConfig(bits=16),
            "int8": CompressionConfig(bits=8, granularity="per-channel"),
            "int4 weight-only": CompressionConfig(bits=4, granularity="group-32")}


def _measure_model(ctx: Context, name: str, scenario, model, batches, accuracy: bool = True) -> list[dict]:
    from gemini_core.compress import compress
    from gemini_core.measure import classification_metrics

    models, rows = {}, []
    for key, config in _variants().items():
        t0 = time.perf_counter()
        compressed = compress(model, config, scenario, device=ctx.device)
        metrics = (classification_metrics(compressed.model, scenario.splits.test, ctx.device) if accuracy
                   else {"accuracy": None, "macro_f1": None})
        models[key] = compressed.model
        rows.append({"model": name, "variant": key, "label": config.label(), "backend": compressed.backend,
                     "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                     "size_bytes": len(compressed.storage()), "eval_seconds": round(time.perf_counter() - t0, 1)})
        log(f"precision {name} {key}: accuracy {metrics['accuracy']} ({compressed.backend})")
        del compressed
    base_acc = rows[0]["accuracy"]
    for row in rows:
        row["accuracy_delta_pts"] = (row["accuracy"] - base_acc) * 100 if accuracy else None
    out = []
    for batch_label, batch in batches:
        inputs = scenario.splits.test.first(batch).inputs
        timing = interleaved_latency(models, inputs, "fp32", rounds=ctx.pick(7, 3, 2), runs=ctx.pick(2, 1, 1),
                                     device=ctx.device)
        for row in rows:
            out.append({**row, "batch": batch_label, "speedup": timing[row["variant"]]["speedup"],
                        "latency_ms": timing[row["variant"]]["ms"]})
        log(f"precision {name} batch {batch_label}: " + ", ".join(
            f"{k} {fmt_x(timing[k]['speedup'])}" for k in models if k != "fp32"))
    return out


def run(quick: bool = False, ctx: Context | None = None) -> dict:
    from .common import make_context

    ctx = ctx or make_context(quick=quick)
    started = time.perf_counter()
    env = environment(ctx)
    result = {"section": "precision", "title": TITLE, "mode": ctx.mode, "env": env, "notes": []}
    found = None if ctx.tiny else text_model(ctx)
    text_info = None
    if found is not None:
        scenario, model, text_info, _ = found
        length = scenario.max_length
        trained = bool(text_info.get("trained"))
        rows = _measure_model(ctx, "MiniLM", scenario, model, [(f"1x{length}", 1), (f"32x{length}", 32)],
                              accuracy=trained)
        if not trained:
            result["notes"].append("quick profile: MiniLM's classification head is untrained, so accuracy is not "
                                   "measured (it would be chance-level); latency is real.")
    else:
        result["notes"].append("MiniLM skipped (tiny profile or no text data): digits CNN stands in")
        scenario, baseline = digits(ctx)
        rows = _measure_model(ctx, "digits CNN", scenario, baseline.model, [("1", 1), ("32", 32)])
    result["rows"] = rows
    result["text_model"] = text_info
    result["runtimes"] = _runtimes(ctx, scenario, model if found is not None else baseline.model, result)
    result["notes"] += [
        "int8 = per-channel symmetric weight codes run by torch's dynamic-quantized Linear (activations "
        "quantized per batch); every Linear layer is int8, embeddings are dequantized fp32.",
        "int4 weight-only = group-32 codes stored bit-packed, dequantized to fp32 at load: smaller, not faster.",
        "Accuracy change in points against fp32 on the same held-out split; speed-up = fp32 / variant latency per "
        "interleaved round, median (min–max).",
    ]
    goal = f"int8 >= {TARGET_SPEEDUP}x faster than fp32 (MiniLM, CPU, batch 32) and <= {TARGET_DROP_PTS} point lost"
    hit = [r for r in rows if r["model"] == "MiniLM" and r["variant"] == "int8" and r["batch"].startswith("32")]
    if hit:
        r = hit[0]
        trained = bool(text_info and text_info.get("trained"))
        speed, drop = r["speedup"]["median"], (-r["accuracy_delta_pts"] if trained else 0.0)
        met = speed >= TARGET_SPEEDUP and drop <= TARGET_DROP_PTS if trained else None
        why = []
        bf16 = next((x for x in rows if x["model"] == "MiniLM" and x["variant"] == "bf16"
                     and x["batch"].startswith("32")), None)
        if speed < TARGET_SPEEDUP:
            text = ("torch's dynamic int8 Linear (fbgemm) speeds up only the Linear layers and quantizes "
                    "activations per batch; attention products, softmax, layer norms and GELU stay fp32")
            if bf16 is not None:
                amx = "amx_bf16" in (result["env"].get("cpu_flags") or [])
                text += (f". bf16 reached {bf16['speedup']['median']:.2f}x here"
                         + (" (this CPU has AMX-BF16 matrix units, which the int8 path does not use)" if amx else ""))
            why.append(text)
        if trained and drop > TARGET_DROP_PTS:
            why.append("per-tensor-activation int8 error in the FFN down-projections (inputs up to |24|)")
        if not trained:
            why.append("accuracy not evaluated (untrained head in this profile)")
        acc_txt = f"{r['accuracy_delta_pts']:+.1f} pts" if trained else "accuracy not measured"
        result["targets"] = [target("int8 backend", goal, f"{fmt_x(r['speedup'])}, {acc_txt}",
                                    met if trained else (False if speed < TARGET_SPEEDUP else None),
                                    "; ".join(why), value=speed)]
    else:
        result["targets"] = [target("int8 backend", goal, "MiniLM not measured in this run", None, "MiniLM skipped")]
    if result["runtimes"].get("target"):
        goal = result["runtimes"]["target"]
        result["targets"].append(target("int8 on a runtime", goal["goal"], goal["measured"], goal["met"],
                                        "" if goal["met"] is not False else "see the runtime rows", value=goal["value"]))
    result["tables"] = [{
        "title": "Backends",
        "columns": [("model", "model", "s"), ("batch", "batch", "s"), ("variant", "variant", "s"),
                    ("backend", "backend (as built)", "s"), ("speedup", "speed-up vs fp32", "x"),
                    ("latency_ms", "latency ms (median)", "ms"), ("accuracy", "test accuracy", ".4f"),
                    ("accuracy_delta_pts", "Δ accuracy (pts)", "+.1f"), ("size_bytes", "file (bytes)", ",d")],
        "rows": rows}, _runtime_table(result["runtimes"])]
    result["env"] = finish_environment(env, started)
    return result


def _runtimes(ctx: Context, scenario, model, result: dict) -> dict:
    """Torch fp32 vs every runtime and precision, and the peers, interleaved at batch 32 (bench.runtimes)."""
    from gemini_core.runtimes.cpu import cpu_record

    cpu = cpu_record()
    args = runtime_bench.section_args(batch=min(32, len(scenario.splits.test)), rounds=ctx.pick(5, 3, 2),
                                      calibration_batches=ctx.pick(8, 4, 2))
    section = runtime_bench.runtime_section(model, scenario, args)
    section.update({"cpu": cpu, "threads": args.threads, "batch": args.batch})
    section["target"] = runtime_bench.int8_target(section["rows"], cpu)
    result["notes"].append(f"Runtime rows: CPU {cpu['cpu']}, flags {' '.join(cpu['cpu_flags']) or '–'}; "
                           f"{args.threads} threads, batch {args.batch}, {args.rounds} interleaved rounds; peers are "
                           "the runtimes' documented recipes applied by hand (ORT quantize_static defaults, NNCF "
                           "quantize defaults); 'vs peer' = the peer's latency / the product row's.")
    for item in section.get("skipped", []):
        result["notes"].append(f"runtime row skipped: {item['variant']}: {item['reason']}")
    log("precision runtimes: " + ", ".join(f"{r['variant']} {r['speedup_vs_torch_fp32']:.2f}x"
                                           for r in section["rows"] if r.get("speedup_vs_torch_fp32")))
    return section


def _runtime_table(section: dict) -> dict:
    rows = [{**r, "calibration_text": (f"{r['calibration']['examples']} ex., {r['calibration']['method']}"
                                       if r.get("calibration", {}).get("examples") else
                                       r.get("calibration", {}).get("method"))} for r in section.get("rows", [])]
    return {"title": "Runtimes and their peers (batch 32, torch fp32 = 1x)",
            "columns": [("variant", "variant", "s"), ("recipe", "recipe", "s"),
                        ("speedup_vs_torch_fp32", "vs torch fp32", ".2fx"), ("speedup_vs_peer", "vs peer", ".2fx"),
                        ("latency_ms_p50", "latency ms p50", ".1f"), ("accuracy", "test accuracy", ".4f"),
                        ("accuracy_delta_pts", "Δ accuracy (pts)", "+.1f"), ("size_bytes", "file (bytes)", ",d"),
                        ("size_ratio_vs_torch_fp32", "smaller", ".2fx"), ("calibration_text", "calibration", "s")],
            "rows": rows}
