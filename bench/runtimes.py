"""Runtimes on MiniLM text classification: torch eager vs ONNX Runtime vs OpenVINO, with a peer column.

One fine-tuned MiniLM (the product's ``text`` scenario on a small CSV) is built on every runtime and
precision the engine offers, plus the same model compressed by hand with each runtime's documented
recipe (ONNX Runtime ``quant_pre_process`` + ``quantize_static`` defaults; NNCF ``quantize`` defaults):
the "peer" rows, i.e. what a user gets without the product. All variants are timed interleaved in one
run (batch 32 x 64 tokens by default), accuracy is on the held-out test split (its size is reported),
sizes are the bytes of each runtime's serialized form. The CPU model, its instruction-set flags and
the load average at start and end are recorded, because which runtime wins depends on them.

    python -m bench.runtimes --data PATH/SMSSpamCollection --rows 2000

``--data`` is the UCI SMS Spam Collection (label TAB text; by default the copy in the data folder beside
the checkout, where the rest of the bench finds its text data too, ``common.shared_data_dir``) or a GLUE SST-2
file (``sentence TAB label`` with its header line). ``--isa avx2`` caps every library that honours a cap to AVX2
and records what each one reports in force (``runtimes.cpu.isa_restriction``).

Runtimes that are not installed are listed with the reason and skipped.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from gemini_core.runtimes.cpu import ISA_CAPS, isa_cap_environment

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "sms_spam" / "SMSSpamCollection"
DEFAULT_OUT = REPO / "bench" / "results" / "runtimes.json"
TOLERANCE_PTS = 1.0
INT8_TARGET = 2.5  # the int8 goal: int8 vs torch fp32 on a CPU with int8 dot-product instructions (VNNI / AMX)
# (name, runtime, precision, recipe): "product" rows may be chosen by --execution auto, "peer" rows are
# the hand-applied documented recipes they are compared with.
VARIANTS = (
    ("torch fp32", "torch", "fp32", "product"),
    ("torch bf16", "torch", "bf16", "product"),
    ("torch int8 (dynamic)", "torch", "int8", "product"),
    ("onnxruntime fp32", "onnxruntime", "fp32", "product"),
    ("onnxruntime int8 (static QDQ)", "onnxruntime", "int8", "product"),
    ("onnxruntime int8 (dynamic)", "onnxruntime", "int8-dynamic", "product"),
    ("onnxruntime int8 peer", "onnxruntime", "int8-peer", "peer"),
    ("openvino fp32", "openvino", "fp32", "product"),
    ("openvino fp32 peer", "openvino", "fp32-peer", "peer"),
    ("openvino bf16", "openvino", "bf16", "product"),
    ("openvino int8 (NNCF)", "openvino", "int8", "product"),
    ("openvino int8 peer", "openvino", "int8-peer", "peer"),
    ("openvino int4 weights (g32)", "openvino", "int4-weights", "product"),
)


def log(message: str) -> None:
    print(f"[runtimes {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def first_rows(source: Path, rows: int, home: Path) -> Path:
    """A copy of the first ``rows`` lines of ``source`` (a smaller test split keeps the run to minutes)."""
    path = home / "data" / f"{source.stem}_first{rows}{source.suffix}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(source, encoding="utf-8", newline="") as handle:
            lines = [line for _, line in zip(range(rows), handle)]
        path.write_text("".join(lines), encoding="utf-8", newline="")
    return path


def baseline(args, home: Path):
    """(scenario, fine-tuned MiniLM, info): trained once, cached under the bench home."""
    from gemini_core.scenarios import TrainSettings, get_scenario
    from gemini_core.training.baseline import get_baseline

    with open(args.data, encoding="utf-8") as handle:
        glue = handle.readline().split("\t")[0].strip() == "sentence"  # GLUE SST-2 (sentence TAB label, header)
    data = first_rows(Path(args.data), args.rows + int(glue), home)  # the header line is not a row
    columns = (dict(header="infer", text_column="sentence", label_column="label") if glue
               else dict(header=False, text_column=1, label_column=0))
    scenario = get_scenario("text", data=str(data), max_train_examples=args.train_examples, max_length=args.length,
                            **columns)
    settings = TrainSettings(epochs=getattr(args, "epochs", 1), batch_size=32, lr=3e-4, weight_decay=0.01)
    started = time.perf_counter()
    trained = get_baseline(scenario, settings)
    scenario.default_train = settings  # the points' recovery fine-tunes at 0.3x this rate, this batch (prune())
    splits = scenario.splits
    info = {"data": str(args.data), "rows_used": args.rows, "train": len(splits.train), "val": len(splits.val),
            "test": len(splits.test), "max_length": scenario.max_length, "fine_tune": settings.to_dict(),
            "baseline_seconds": round(time.perf_counter() - started, 1), "baseline_cached": trained.cached,
            "baseline_test_accuracy": trained.test_accuracy,
            "baseline_key": trained.key}
    return scenario, trained.model, info


def build_variants(model, scenario, args) -> tuple[dict, dict, list[dict]]:
    """name -> RuntimeModel for every variant whose runtime is here; plus the rows of those skipped."""
    from gemini_core.runtimes.catalog import available_runtimes, build

    reasons = available_runtimes()
    example = scenario.splits.train.first(2).inputs
    calibration = [b.inputs for _, b in zip(range(args.calibration_batches), scenario.splits.train.batches(32))]
    built, kinds, skipped = {}, {}, []
    wanted = set(args.variants.split(",")) if getattr(args, "variants", None) else None
    for name, runtime, precision, recipe in VARIANTS:
        if wanted is not None and name not in wanted and name != "torch fp32":  # torch fp32 is the reference
            continue
        if reasons.get(runtime):
            skipped.append({"variant": name, "reason": reasons[runtime]})
            continue
        started = time.perf_counter()
        try:
            static = "int8" in precision and precision != "int8-dynamic"
            built[name] = build(runtime, model, example, calibration if static else None,
                                precision, threads=args.threads)
        except Exception as exc:  # one variant failing (e.g. bf16 refused on this CPU) must not end the run
            skipped.append({"variant": name, "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
            log(f"{name}: skipped ({skipped[-1]['reason']})")
            continue
        kinds[name] = recipe
        log(f"{name}: built in {time.perf_counter() - started:.1f} s, {built[name].size_bytes:,} bytes")
    return built, kinds, skipped


def storage_configs(text: str) -> list[tuple[int, str, tuple]]:
    """``--storage``: comma list of BITS:GRANULARITY, each optionally ``+emb=BITS:GRANULARITY`` (the word-embedding
    table at its own bits: a per-layer override) -> [(bits, granularity, layer overrides)]."""
    out = []
    for spec in text.split(","):
        main, _, emb = spec.strip().partition("+emb=")
        bits, _, granularity = main.partition(":")
        overrides = ()
        if emb:
            e_bits, _, e_granularity = emb.partition(":")
            overrides = ({"pattern": "word_embeddings", "bits": int(e_bits),
                          "granularity": e_granularity or "per-channel"},)
        out.append((int(bits), granularity or "per-channel", overrides))
    return out


def point_configs(args) -> list[list]:
    """[[CompressionConfig per storage]] for every pruning ``--points`` asks for, the unpruned control (the same
    recovery steps) first."""
    from gemini_core.config import CompressionConfig

    settings = [("none", 0.0)]
    for item in args.points.split(","):
        method, _, ratio = item.strip().partition(":")
        settings.append((method, float(ratio)))
    return [[CompressionConfig(prune_method=m, prune_ratio=r, finetune_steps=args.recovery_steps,
                               recovery=args.recovery, bits=b, granularity=g, layer_overrides=o)
             for b, g, o in storage_configs(args.storage)] for m, r in settings]


def _pruned(model, config, scenario, home: Path, baseline_key: str):
    """The pruned and recovered copy of ``model`` for ``config``, cached under the bench home (the same
    pruning is timed in several runs: under the AVX2 cap and natively, at 1 and 2 threads)."""
    import dataclasses
    import hashlib

    from gemini_core.compress import prune_copy
    from gemini_core.techniques.prune import PruneResult

    prune_config = dataclasses.replace(config, bits=32, granularity="per-channel", layer_overrides=(),
                                       execution="dense")
    key = hashlib.sha256(f"{baseline_key}|{prune_config.label()}|{config.recovery}".encode()).hexdigest()[:16]
    path = home / "points" / f"{key}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=False)  # this bench's own cache file, written below
        return PruneResult(**saved), True, 0.0
    started = time.perf_counter()
    result = prune_copy(model, prune_config, scenario)
    seconds = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: getattr(result, k) for k in ("model", "history", "achieved_ratio", "params_before",
                                                 "params_after", "finetune_loss", "notes")}, path)
    return result, False, seconds


def engine_runtime(compressed, execution: str, threads: int):
    """The point's stored weights on one of the engine's torch executions (``dense-int8``), as a RuntimeModel
    timed like the others; its size is what the built model holds in memory (``measure``'s count)."""
    import dataclasses

    from gemini_core.measure import _resident_bytes
    from gemini_core.runtimes.base import RuntimeModel
    from gemini_core.runtimes.torch_kernels import build_execution_model

    config = dataclasses.replace(compressed.config, execution=execution)
    runnable, backend, _ = build_execution_model(compressed.stored_model, config, compressed.quantized,
                                                 torch.device("cpu"), compressed.plan)

    @torch.inference_mode()
    def run(inputs):
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return runnable(**inputs).float()

    return RuntimeModel("torch", execution, run, _resident_bytes(runnable), threads=threads,
                        details={"backend": backend, "torch": torch.__version__})


def build_points(model, scenario, args, home: Path, baseline_key: str) -> tuple[dict, dict, dict, list[dict]]:
    """Compressed points (``--points``) on the runtimes of ``--point-runtimes``.

    Each point is pruned and recovered once (cached under GEMINI_HOME), stored at ``--storage`` with the
    engine's ``compress``, and its stored weights (the dequantized codes) built on each execution:
    ``dense-int8`` (the engine's execution: torch's dynamic int8 Linear, per-channel int8 codes of those
    values) or ``onnxruntime:int8-dynamic`` (the conversion of the engine's ``onnxruntime-int8-dynamic``
    execution: ``quantize_dynamic`` of the weight ops). The file shipped is the engine's safetensors at the
    storage bits (``shipped_bytes``); what the execution holds once built is recorded beside it
    (``runtime_bytes``: torch's tensors in memory, or ONNX Runtime's int8 file)."""
    from gemini_core.compress import compress
    from gemini_core.runtimes.catalog import available_runtimes, build

    reasons = available_runtimes()
    example = scenario.splits.train.first(2).inputs
    calibration = [b.inputs for _, b in zip(range(args.calibration_batches), scenario.splits.train.batches(32))]
    built, kinds, facts, skipped = {}, {}, {}, []
    for configs in point_configs(args):
        pruned, cached, prune_seconds = _pruned(model, configs[0], scenario, home, baseline_key)
        for config in configs:
            compressed = compress(model, config, scenario, pruned=pruned)
            shipped = len(compressed.storage())
            point = config.label()
            log(f"point {point}: {shipped:,} B shipped "
                f"({'cached pruning' if cached else f'pruned in {prune_seconds:.0f} s'})")
            for item in args.point_runtimes.split(","):
                runtime, _, precision = item.strip().partition(":")
                name = f"{point} → {item.strip()}"
                if reasons.get(runtime):
                    skipped.append({"variant": name, "reason": reasons[runtime]})
                    continue
                started = time.perf_counter()
                if not precision:  # an engine execution on torch (dense-int8): the point's own kernels
                    built[name] = engine_runtime(compressed, runtime, args.threads)
                else:  # the stored weights converted as the engine's converted executions do (_convert)
                    static = "int8" in precision and precision != "int8-dynamic"  # calibrated on training batches
                    built[name] = build(runtime, compressed.stored_model, example, calibration if static else None,
                                        precision, threads=args.threads)
                kinds[name] = "point"
                facts[name] = {"point": point, "execution": item.strip(), "config": config.to_dict(),
                               "shipped_bytes": shipped, "runtime_bytes": built[name].size_bytes,
                               "runtime_bytes_means": ("bytes the built torch model holds in memory" if not precision
                                                       else f"bytes of the {runtime} file built on load"),
                               "calibration": built[name].calibration.to_dict(),
                               "achieved_ratio": pruned.achieved_ratio, "params_after": pruned.params_after,
                               "finetune_loss": pruned.finetune_loss, "pruning_cached": cached,
                               "prune_seconds": round(prune_seconds, 1), "backend": built[name].details.get("backend")}
                log(f"{name}: built in {time.perf_counter() - started:.1f} s, runtime {built[name].size_bytes:,} B")
        del pruned
    return built, kinds, facts, skipped


def accuracy_fn(scenario, cache: dict):
    from gemini_core.measure import classification_metrics

    def accuracy(model) -> float:
        key = id(model)
        if key not in cache:
            cache[key] = classification_metrics(model, scenario.splits.test, "cpu", batch_size=64)["accuracy"]
        return cache[key]

    return accuracy


def rows_from(result: dict, built: dict, kinds: dict, facts: dict | None = None) -> list[dict]:
    rows = []
    reference_bytes = built[result["reference"]].size_bytes
    for name, model in built.items():
        row = result["candidates"][name]
        fact = (facts or {}).get(name)
        ref_ms, own_ms = result["candidates"][result["reference"]].get("rounds_ms"), row.get("rounds_ms")
        if ref_ms and own_ms and len(ref_ms) == len(own_ms):  # the per-round ratios the median is taken over
            row = {**row, "speedup_rounds": [round(a / b, 3) for a, b in zip(ref_ms, own_ms) if b]}
        extra = {} if fact is None else {
            **fact, "shipped_ratio_vs_torch_fp32": reference_bytes / fact["shipped_bytes"],
            "runtime_ratio_vs_torch_fp32": reference_bytes / fact["runtime_bytes"]}
        rows.append({"variant": name, "recipe": kinds[name], **model.record(),
                     "accuracy": row.get("accuracy"), "accuracy_delta_pts": row.get("accuracy_delta_pts"),
                     "latency_ms_p50": row.get("latency_ms_p50"), "latency_ms_p10": row.get("latency_ms_p10"),
                     "latency_ms_p90": row.get("latency_ms_p90"), "rounds_ms": row.get("rounds_ms"),
                     "speedup_vs_torch_fp32": row.get("speedup_vs_reference"),
                     "speedup_rounds": row.get("speedup_rounds"), "speedup_interval": row.get("speedup_interval"),
                     "size_ratio_vs_torch_fp32": reference_bytes / (fact or {}).get("shipped_bytes",
                                                                                    model.size_bytes),
                     "error": row.get("error"), **extra})
    for row in rows:  # peer column: the product's row against the hand-made one of the same runtime and precision
        if row["recipe"] == "peer":
            precision = row["precision"].removesuffix("-peer")
            product = next((r for r in rows if r["runtime"] == row["runtime"] and r["precision"] == precision), None)
            if product and row["latency_ms_p50"] and product["latency_ms_p50"]:
                product["speedup_vs_peer"] = row["latency_ms_p50"] / product["latency_ms_p50"]
                product["accuracy_vs_peer_pts"] = (product["accuracy"] - row["accuracy"]) * 100
    return rows


def measure_exports(model, scenario, folder: Path, threads: int) -> list[dict]:
    """Exports that keep compression, on the same MiniLM: file size vs safetensors, accuracy after reload."""
    from gemini_core.checkpoint import runtime_exports as ec
    from gemini_core.compress import compress
    from gemini_core.config import CompressionConfig
    from gemini_core.runtimes.catalog import available_runtimes

    reasons = available_runtimes()
    int8, int4 = CompressionConfig(bits=8, granularity="per-channel"), CompressionConfig(bits=4, granularity="group-32")
    jobs = [("onnxruntime", int8, ec.write_onnx_int8), ("onnxruntime", int4, ec.write_onnx_nbits),
            ("openvino", int8, ec.write_openvino_ir), ("openvino", int4, ec.write_openvino_ir)]
    rows = []
    for runtime, config, writer in jobs:
        if reasons.get(runtime):
            rows.append({"format": f"{runtime} {config.label()}", "skipped": reasons[runtime]})
            continue
        started = time.perf_counter()
        compressed = compress(model, config, scenario)
        info = writer(compressed, scenario, folder / f"{runtime}-{config.bits}bit", threads=threads)
        rows.append({"point": config.label(), **info})
        log(f"export {info['format']} {config.label()}: {info['size_bytes']:,} B = "
            f"{info['size_ratio_vs_safetensors']:.3f}x safetensors, accuracy {info['reloaded_accuracy']:.4f} "
            f"({info['accuracy_delta_pts']:+.2f} pts) in {time.perf_counter() - started:.0f} s")
    return rows


def export_table(rows: list[dict]) -> str:
    lines = ["| export | point | file bytes | safetensors bytes | ratio (max 1.15) | accuracy point → reloaded "
             "| Δ pts (tolerance) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['format']} | skipped: {r['skipped']} | | | | | |")
            continue
        lines.append(f"| {r['format']} | {r['point']} | {r['size_bytes']:,} | {r['safetensors_bytes']:,} | "
                     f"{r['size_ratio_vs_safetensors']:.3f}x {'ok' if r['size_ok'] else 'OVER'} | "
                     f"{r['point_accuracy']:.4f} → {r['reloaded_accuracy']:.4f} | {r['accuracy_delta_pts']:+.2f} "
                     f"({r['tolerance_pts']}) {'ok' if r['accuracy_ok'] else 'OVER'} |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    head = ("| variant | recipe | latency ms p50 (p10–p90) | vs torch fp32 | vs peer | accuracy | Δ pts | size bytes "
            "| smaller | calibration |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['variant']} | {r['recipe']} | failed: {r['error']} | | | | | | | |")
            continue
        peer = f"{r['speedup_vs_peer']:.2f}x" if r.get("speedup_vs_peer") else ""
        calib = r["calibration"]
        calib_txt = f"{calib['examples']} ex., {calib['method']}" if calib["examples"] else calib["method"]
        lines.append(f"| {r['variant']} | {r['recipe']} | {r['latency_ms_p50']:.0f} ({r['latency_ms_p10']:.0f}–"
                     f"{r['latency_ms_p90']:.0f}) | {r['speedup_vs_torch_fp32']:.2f}x | {peer} | {r['accuracy']:.4f} | "
                     f"{r['accuracy_delta_pts']:+.1f} | {r['size_bytes']:,} | {r['size_ratio_vs_torch_fp32']:.2f}x | "
                     f"{calib_txt} |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="SMS Spam Collection file (label TAB text)")
    parser.add_argument("--rows", type=int, default=2000, help="first rows of the file used (test split = 15%%)")
    parser.add_argument("--train-examples", type=int, default=400, help="fine-tuning examples (cap)")
    parser.add_argument("--length", type=int, default=64, help="tokens per example")
    parser.add_argument("--batch", type=int, default=32, help="examples per timed call")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--calibration-batches", type=int, default=8, help="training batches of 32 for int8")
    parser.add_argument("--threads", type=int, default=None, help="threads for every runtime (default: torch's)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON result file")
    parser.add_argument("--exports", action="store_true", help="also write and check the compressed exports")
    parser.add_argument("--no-runtimes", action="store_true", help="skip the runtime timing (with --exports)")
    parser.add_argument("--variants", default=None,
                        help="comma list of variant names to build (default: all; torch fp32 is always built)")
    parser.add_argument("--points", default=None,
                        help="compressed points timed beside the runtimes: comma list of METHOD:RATIO (e.g. "
                             "'l2-structured:0.5,l2-structured:0.4'); the unpruned control with the same recovery "
                             "steps is always added. Each is stored at --storage and run on --point-runtimes")
    parser.add_argument("--recovery-steps", type=int, default=48, help="recovery fine-tuning steps of every point "
                        "(the unpruned control too)")
    parser.add_argument("--recovery", default="finetune", help="recovery of every point (finetune, distill)")
    parser.add_argument("--storage", default="4:group-32", help="BITS:GRANULARITY the points are stored at")
    parser.add_argument("--embedding-storage", default=None,
                        help="BITS:GRANULARITY for the word-embedding table only (a per-layer override)")
    parser.add_argument("--point-runtimes", default="dense-int8,onnxruntime:int8-dynamic",
                        help="comma list of what each point's stored weights run on: an engine execution on torch "
                             "(dense-int8) or RUNTIME:PRECISION (converted as the engine's executions do)")
    parser.add_argument("--epochs", type=int, default=1, help="baseline fine-tuning epochs")
    parser.add_argument("--isa", choices=sorted(ISA_CAPS), default=None,
                        help="cap every library that honours it to this instruction set (the run starts itself again "
                             "with the caps set: libraries read them when they load)")
    return parser.parse_args(argv)


def restart_with_isa_cap(isa: str | None, argv) -> None:
    """Start this command again with the caps for ``isa`` in the environment, unless they are already set."""
    if isa is None:
        return
    wanted = isa_cap_environment(isa)
    if all(os.environ.get(k) == v for k, v in wanted.items()):
        return
    log(f"starting again with {' '.join(f'{k}={v}' for k, v in wanted.items())}")
    os.environ.update(wanted)
    args = list(argv if argv is not None else sys.argv[1:])
    os.execv(sys.executable, [sys.executable, "-m", "bench.runtimes", *args])


def main(argv=None) -> dict:
    from gemini_core.runtimes.cpu import cpu_record, isa_restriction

    args = parse_args(argv)
    restart_with_isa_cap(args.isa, argv)
    if not Path(args.data).is_file():
        raise SystemExit(f"error: data file {args.data} does not exist (pass --data)")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    out = Path(args.out)
    home = out.parent / ".home"
    os.environ.setdefault("GEMINI_HOME", str(home))
    started, load_start = time.perf_counter(), _loadavg()
    scenario, model, info = baseline(args, home)
    args.home, args.baseline_key = Path(os.environ["GEMINI_HOME"]), info["baseline_key"]
    log(f"baseline: test accuracy {info['baseline_test_accuracy']:.4f} on {info['test']} examples")
    report = runtime_section(model, scenario, args) if not args.no_runtimes else {}
    exports = measure_exports(model, scenario, home / "exports", args.threads) if args.exports else None
    report.update({
        "section": "runtimes", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m bench.runtimes " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "cpu": cpu_record(), "isa_cap": args.isa, "isa_restriction": isa_restriction(), "threads": args.threads, "batch": f"{args.batch}x{args.length}", "text_model": info,
        "exports": exports, "loadavg_start": load_start, "loadavg_end": _loadavg(),
        "seconds": round(time.perf_counter() - started, 1), "versions": _versions()})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if report.get("rows"):
        print(table(report["rows"]))
        print(f"\nauto choice (fastest within {TOLERANCE_PTS} pt of torch fp32): {report['auto_choice']['chosen']}")
    for item in report.get("skipped", []):
        print(f"skipped {item['variant']}: {item['reason']}")
    if exports is not None:
        print("\n" + export_table(exports))
    print(f"\nISA cap {args.isa or 'none (native)'}: {json.dumps(report['isa_restriction'])}")
    print(f"\nCPU {report['cpu']['cpu']} flags {' '.join(report['cpu']['cpu_flags'])}; threads {args.threads}; "
          f"load {load_start} -> {report['loadavg_end']}; {report['seconds']} s; JSON: {out}")
    return report


def section_args(threads: int | None = None, batch: int = 32, rounds: int = 5, calibration_batches: int = 8
                 ) -> argparse.Namespace:
    """The options ``runtime_section`` reads, for callers outside this command (``bench.precision``)."""
    return argparse.Namespace(threads=threads or torch.get_num_threads(), batch=batch, rounds=rounds,
                              calibration_batches=calibration_batches)


def int8_target(rows: list[dict], cpu: dict) -> dict:
    """The int8 goal for this CPU: >= 2.5x torch fp32 with VNNI/AMX; on AVX2 only, the product's best
    row at least as fast as the fastest hand-applied (peer) row. Returns {goal, met, measured, value}."""
    ok = [r for r in rows if not r.get("error") and r.get("accuracy_delta_pts") is not None
          and r["accuracy_delta_pts"] >= -TOLERANCE_PTS]
    product = [r for r in ok if r["recipe"] == "product"]
    peers = [r for r in ok if r["recipe"] == "peer"]
    int8 = [r for r in product if str(r.get("precision", "")).startswith("int8")]
    if cpu.get("int8_dot_product") and int8:
        best = max(int8, key=lambda r: r["speedup_vs_torch_fp32"])
        return {"goal": f"int8 >= {INT8_TARGET}x torch fp32 within {TOLERANCE_PTS:g} pt (CPU with VNNI/AMX)",
                "met": best["speedup_vs_torch_fp32"] >= INT8_TARGET, "value": best["speedup_vs_torch_fp32"],
                "measured": f"{best['speedup_vs_torch_fp32']:.2f}x: {best['variant']}"}
    if product and peers:
        best, peer = (max(group, key=lambda r: r["speedup_vs_torch_fp32"]) for group in (product, peers))
        ratio = best["speedup_vs_torch_fp32"] / peer["speedup_vs_torch_fp32"]
        return {"goal": "AVX2 only: the product's best row at least as fast as the fastest peer",
                "met": ratio >= 1.0, "value": ratio,
                "measured": f"{best['variant']} {ratio:.2f}x {peer['variant']}"}
    return {"goal": "int8 runtime goal", "met": None, "value": None, "measured": "no int8 or peer row ran"}


def runtime_section(model, scenario, args) -> dict:
    """Every variant built, scored and timed interleaved; the auto choice among the product's rows."""
    from gemini_core.runtimes.auto import choose_fastest

    built, kinds, skipped = build_variants(model, scenario, args)
    facts = {}
    if getattr(args, "points", None):
        more, more_kinds, facts, more_skipped = build_points(model, scenario, args, args.home, args.baseline_key)
        built, kinds, skipped = {**built, **more}, {**kinds, **more_kinds}, skipped + more_skipped
    inputs = scenario.splits.test.first(args.batch).inputs
    products = [n for n in built if kinds[n] == "product"]
    result = choose_fastest(built, inputs, accuracy_fn(scenario, {}), TOLERANCE_PTS, reference="torch fp32",
                            rounds=args.rounds, warmup=2, compete=products)
    choice = {k: result[k] for k in ("chosen", "reference", "tolerance_points", "method")}
    return {"auto_choice": choice, "rows": rows_from(result, built, kinds, facts), "skipped": skipped}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("torch", "transformers", "onnx", "onnxruntime", "openvino", "nncf"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


if __name__ == "__main__":
    main()
