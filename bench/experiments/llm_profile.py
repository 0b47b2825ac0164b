"""Where one OpenVINO decode step spends its time: the product's point against another IR, per node.

Every model is compiled twice in this one process, with and without ``PERF_COUNT``, with the settings
``--config`` names: ``product`` (the product runner's: f32 precision), ``plugin`` (threads, one stream
and the latency hint, the plugin choosing the rest, as optimum-intel does) or ``each`` (the product's
points with the product's settings, the other IRs with the plugin's). Each then decodes greedily
``--new-tokens`` after a ``--prompt-tokens`` prompt, in rounds, the models alternating, after one
warm-up: the uninstrumented step times are the speed; on the instrumented copies the CPU plugin's
profiling info is summed per step by node type and by exec type (the kernel it chose). The compiled
models' properties that differ are listed, and the node counts of each compiled model.

    python -m bench.experiments.llm_profile --cache /tmp/gemini_llm_cache --points "gptq int4 g64" \
        --ir peer=/tmp/peer/int4g64/openvino_model.xml

A peer IR is written once by optimum-intel (``OVModelForCausalLM.from_pretrained(folder, export=True,
quantization_config=..., compile=False).save_pretrained(out)``, in the peer's Python); it is read here
with plain ``openvino``, so both sides run in the same process under the same load.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

PROPERTIES = ("INFERENCE_PRECISION_HINT", "KV_CACHE_PRECISION", "DYNAMIC_QUANTIZATION_GROUP_SIZE",
              "KEY_CACHE_PRECISION", "VALUE_CACHE_PRECISION", "KEY_CACHE_GROUP_SIZE", "VALUE_CACHE_GROUP_SIZE",
              "INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT", "EXECUTION_MODE_HINT",
              "ENABLE_HYPER_THREADING", "ENABLE_CPU_PINNING", "SCHEDULING_CORE_TYPE", "LOG_LEVEL")


def product_models(points: list[str], cache: str) -> dict:
    """{name: ov.Model} for points of bench.experiments.llm_runtimes.POINTS, their weights as the product stores them."""
    from bench.experiments.llm_runtimes import POINTS, build_model
    from gemini_core.kinds.llm import source
    from gemini_core.kinds.llm.runtimes.ov_convert import convert_stateful
    from gemini_core.kinds.llm.runtimes.ov_weights import compress_matmul_weights

    base, out = None, {}
    for name in points:
        key, runtime, bits, group, head_bits, head_group, _kv = POINTS[name]
        if runtime != "openvino":
            raise SystemExit(f"{name!r} is not an OpenVINO point")
        if key == "float" or not (Path(cache) / key / source.META_FILE).is_file():
            base = base or source.load_causal_lm("smollm2").model
        model = build_model(base, key, None, None, Path(cache))
        ov_model = convert_stateful(model)
        if bits is not None or head_bits is not None:
            compress_matmul_weights(ov_model, bits, group, head_bits, head_group, model.config.vocab_size)
        out[name] = ov_model
    return out


def compile_config(kind: str, threads: int, perf_count: bool) -> dict:
    """``kind`` is ``product`` or ``plugin``, optionally followed by ``+KEY=VALUE`` compile properties
    (e.g. ``plugin+DYNAMIC_QUANTIZATION_GROUP_SIZE=64``) that override the defaults."""
    kind, *extra = kind.split("+")
    config = {"INFERENCE_NUM_THREADS": str(threads), "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY",
              "PERF_COUNT": "YES" if perf_count else "NO"}
    if kind == "product":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"compile property {item!r} is not KEY=VALUE")
        config[key] = value
    return config


class Stepper:
    """Greedy decoding on any stateful LLM IR, fed by its input names (product: logits_positions)."""

    def __init__(self, compiled):
        self.request = compiled.create_infer_request()
        self.names = {port.get_any_name() for port in compiled.inputs}
        self.position = 0

    def run(self, ids: np.ndarray) -> int:
        n = ids.size
        feed = {"input_ids": ids.reshape(1, n).astype(np.int64),
                "attention_mask": np.ones((1, self.position + n), np.int64),
                "position_ids": np.arange(self.position, self.position + n, dtype=np.int64).reshape(1, n),
                "beam_idx": np.zeros(1, np.int32), "logits_positions": np.array([n - 1], np.int64)}
        out = self.request.infer({k: v for k, v in feed.items() if k in self.names})
        self.position += n
        return int(out["logits"][0, -1].argmax())

    def start(self, prompt: np.ndarray) -> int:
        self.request.reset_state()
        self.position = 0
        return self.run(prompt)


def timed_decode(stepper: Stepper, prompt: np.ndarray, new_tokens: int) -> list:
    """Decode once; the steps' wall times (ms)."""
    token, walls = stepper.start(prompt), []
    for _ in range(new_tokens - 1):
        start = time.perf_counter()
        token = stepper.run(np.array([token]))
        walls.append((time.perf_counter() - start) * 1e3)
    return walls


def profile_decode(stepper: Stepper, prompt: np.ndarray, new_tokens: int, by_type, by_exec, by_layer) -> None:
    """Decode once; add each step's per-node times (ms) to the sums."""
    token = stepper.start(prompt)
    for _ in range(new_tokens - 1):
        token = stepper.run(np.array([token]))
        for info in stepper.request.get_profiling_info():
            if info.status.name != "EXECUTED":
                continue
            ms = info.real_time.total_seconds() * 1e3
            by_type[info.node_type] += ms
            by_exec[f"{info.node_type}:{info.exec_type}"] += ms
            by_layer[info.node_name] += ms


def runtime_counts(compiled) -> Counter:
    return Counter(op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops())


def properties(compiled) -> dict:
    out = {}
    for name in PROPERTIES:
        try:
            out[name] = str(compiled.get_property(name))
        except RuntimeError:
            continue
    return out


def main() -> None:
    import openvino as ov

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="gptq int4 g64", help="bench.experiments.llm_runtimes points, comma-separated")
    parser.add_argument("--cache", default="/tmp/gemini_llm_cache")
    parser.add_argument("--ir", action="append", default=[], help="NAME=PATH/openvino_model.xml[:product|:plugin] (repeatable; the "
                             "suffix overrides --config for this IR)")
    parser.add_argument("--config", choices=("each", "product", "plugin"), default="each",
                        help="product: the product runner's settings (f32 precision); plugin: the plugin's "
                             "defaults; each: the product's points as the product runs them, other IRs as the plugin")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=14)
    parser.add_argument("--save-ir", default="", help="folder: write each product model's IR there")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    models = product_models([p for p in args.points.split(",") if p], args.cache) if args.points else {}
    kinds = {name: "plugin" if args.config == "plugin" else "product" for name in models}
    core = ov.Core()
    for item in args.ir:
        name, _, path = item.partition("=")
        path, _, kind = path.partition(":")
        models[name] = core.read_model(path)
        kinds[name] = kind or ("product" if args.config == "product" else "plugin")
    if args.save_ir:
        for name, model in models.items():
            ov.save_model(model, str(Path(args.save_ir) / name.replace(" ", "_") / "openvino_model.xml"),
                          compress_to_fp16=False)
    compiled = {name: core.compile_model(model, "CPU", compile_config(kinds[name], args.threads, True))
                for name, model in models.items()}
    plain = {name: Stepper(core.compile_model(model, "CPU", compile_config(kinds[name], args.threads, False)))
             for name, model in models.items()}
    steppers = {name: Stepper(c) for name, c in compiled.items()}
    prompt = np.random.default_rng(0).integers(1, 10000, args.prompt_tokens)
    sums = {name: (defaultdict(float), defaultdict(float), defaultdict(float)) for name in models}
    walls = {name: [] for name in models}
    for name in models:  # warm-up
        timed_decode(plain[name], prompt, args.new_tokens)
        profile_decode(steppers[name], prompt, args.new_tokens, defaultdict(float), defaultdict(float),
                       defaultdict(float))
    names = list(models)
    load_start = os.getloadavg()
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            walls[name] += timed_decode(plain[name], prompt, args.new_tokens)
            profile_decode(steppers[name], prompt, args.new_tokens, *sums[name])
    steps = args.rounds * (args.new_tokens - 1)
    report = {"load_average_start": load_start, "load_average": os.getloadavg(), "threads": args.threads,
              "config": args.config, "steps_per_model": steps, "models": {}}
    for name in names:
        by_type, by_exec, by_layer = sums[name]
        report["models"][name] = {
            "step_wall_ms_median": float(np.median(walls[name])),
            "decode_tokens_per_s": 1e3 / float(np.mean(walls[name])),
            "nodes_ms_per_step": sum(by_type.values()) / steps,
            "by_type_ms": {k: v / steps for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])},
            "by_exec_ms": {k: v / steps for k, v in sorted(by_exec.items(), key=lambda kv: -kv[1])},
            "slowest_nodes_ms": {k: v / steps for k, v in sorted(by_layer.items(), key=lambda kv: -kv[1])[:args.top]},
            "compiled_node_counts": dict(runtime_counts(compiled[name]).most_common()),
            "properties": properties(compiled[name]),
        }
    print_report(report, args.top)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


def print_report(report: dict, top: int) -> None:
    models = report["models"]
    names = list(models)
    print(f"load average {report['load_average_start'][0]:.1f} -> {report['load_average'][0]:.1f}, "
          f"{report['threads']} threads, config {report['config']}, {report['steps_per_model']} decode steps per model")
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    print("| step wall ms (median, no PERF_COUNT) | " +
          " | ".join(f"{m['step_wall_ms_median']:.2f}" for m in models.values()) + " |")
    print("| decode tokens/s (mean step, no PERF_COUNT) | " +
          " | ".join(f"{m['decode_tokens_per_s']:.1f}" for m in models.values()) + " |")
    print("| sum of nodes ms (PERF_COUNT) | " + " | ".join(f"{m['nodes_ms_per_step']:.2f}" for m in models.values()) + " |")
    for section, label in (("by_type_ms", "ms"), ("compiled_node_counts", "nodes")):
        keys = []
        for m in models.values():
            keys += [k for k in list(m[section])[:top] if k not in keys]
        for key in keys:
            cells = [m[section].get(key, 0) for m in models.values()]
            print(f"| {key} ({label}) | " + " | ".join(f"{c:.3f}" if label == "ms" else str(c) for c in cells) + " |")
    props = [m["properties"] for m in models.values()]
    for key in sorted(set().union(*props)):
        values = [p.get(key, "-") for p in props]
        if len(set(values)) > 1:
            print(f"| property {key} | " + " | ".join(values) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
