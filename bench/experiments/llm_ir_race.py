"""Decode speed of OpenVINO LLM IRs, each compiled in its own worker process, timed in rotated rounds.

Every OpenVINO model runs under the same greedy driver (``bench.experiments.llm_profile.Stepper``: one ``infer`` per
token on the stateful IR; a GGUF file, ``--gguf``, under the product's llama.cpp runner, one ``eval`` per
token) and alone in its process, so neither the driver (optimum-intel's ``forward``, the
product's runner) nor other compiled models sharing a process weigh on one side only. Between its
rounds a worker waits on a pipe. Product points (``--points``, as in ``bench.experiments.llm_runtimes``) are
converted and written to a temporary folder first; other IRs come with ``--ir`` (as in
``bench.experiments.llm_profile``, e.g. optimum-intel's export, written once with the peer's Python).

    python -m bench.experiments.llm_ir_race --points "gptq int4 g64" --rounds 20 \
        --ir "peer int4 g64=/tmp/peer/int4g64/openvino_model.xml:plugin"
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.experiments.llm_profile import Stepper, compile_config, product_models, timed_decode
from gemini_core.device import cpu_flags
from gemini_core.kinds.llm.runtimes.measure import copy_bandwidth_gb_s, read_bandwidth_gb_s


class GGUFStepper:
    """The product's llama.cpp runner behind the ``Stepper`` interface (``start`` / ``run``)."""

    def __init__(self, path: str, threads: int):
        from gemini_core.kinds.llm.runtimes.base import LLMRunSettings
        from gemini_core.kinds.llm.runtimes.llamacpp_llm import LlamaCppRunner

        self.runner = LlamaCppRunner(Path(path), LLMRunSettings(threads=threads, context_len=64))

    def start(self, prompt: np.ndarray) -> int:
        import torch

        return self.runner.start(torch.from_numpy(np.asarray(prompt, dtype=np.int64)))

    def run(self, ids: np.ndarray) -> int:
        return self.runner.step(int(ids[-1]))


def worker(path: str, kind: str, threads: int) -> None:
    """One compiled IR (or GGUF file, kind ``gguf``); on each JSON line ``{"prompt": [...], "new_tokens": n}``
    one greedy decode."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library chatter goes to stderr; stdout carries the protocol only
    if kind == "gguf":
        stepper = GGUFStepper(path, threads)
    else:
        import openvino as ov

        core = ov.Core()
        stepper = Stepper(core.compile_model(core.read_model(path), "CPU", compile_config(kind, threads, False)))
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("cmd") == "quit":
            return
        walls = timed_decode(stepper, np.array(cmd["prompt"]), cmd["new_tokens"])
        protocol.write(json.dumps({"decode_tokens_per_s": 1e3 * len(walls) / sum(walls)}) + "\n")


class Worker:
    def __init__(self, path: str, kind: str, threads: int):
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.experiments.llm_ir_race", "--worker", path, kind, str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, bufsize=1, cwd=Path(__file__).resolve().parents[2])
        self.ask(None)

    def ask(self, cmd):
        if cmd is not None:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("an IR worker exited")
        return json.loads(line)

    def close(self):
        self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def main() -> None:
    import openvino as ov

    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="gptq int4 g64", help="bench.experiments.llm_runtimes points, comma-separated")
    parser.add_argument("--cache", default="/tmp/gemini_llm_cache")
    parser.add_argument("--ir", action="append", default=[], help="NAME=PATH/openvino_model.xml[:product|:plugin][+KEY=VALUE...] (compile properties)")
    parser.add_argument("--gguf", action="append", default=[],
                        help="NAME=PATH.gguf: run by the product's llama.cpp runner (llama-cpp-python)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--reference", default="", help="the model every ratio is against (default: the first)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    specs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, model) in enumerate(product_models([p for p in args.points.split(",") if p], args.cache).items()):
            path = Path(tmp) / str(i) / "openvino_model.xml"
            ov.save_model(model, str(path), compress_to_fp16=False)
            specs[name] = (str(path), "product")
        for item in args.ir:
            name, _, path = item.partition("=")
            path, _, kind = path.partition(":")
            specs[name] = (path, kind or "plugin")
        for item in args.gguf:
            name, _, path = item.partition("=")
            specs[name] = (path, "gguf")
        workers = {name: Worker(path, kind, args.threads) for name, (path, kind) in specs.items()}
    prompt = np.random.default_rng(0).integers(1, 10000, args.prompt_tokens).tolist()
    cmd = {"prompt": prompt, "new_tokens": args.new_tokens}
    for w in workers.values():  # warm-up
        w.ask(cmd)
    if args.reference and args.reference not in workers:
        raise SystemExit(f"--reference {args.reference!r} is none of {', '.join(workers)}")
    names = sorted(workers, key=lambda name: name != args.reference) if args.reference else list(workers)
    rounds = {name: [] for name in names}
    load_start = os.getloadavg()
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            rounds[name].append(round(workers[name].ask(cmd)["decode_tokens_per_s"], 1))
    for w in workers.values():
        w.close()
    bandwidth = {**copy_bandwidth_gb_s(args.threads), **read_bandwidth_gb_s(args.threads)}  # right after the rounds
    report = {"load_average_start": load_start, "load_average_end": os.getloadavg(), "threads": args.threads,
              "bandwidth": bandwidth, "cpu_flags": list(cpu_flags()),
              "new_tokens": args.new_tokens, "prompt_tokens": args.prompt_tokens,
              "models": {name: {"settings": specs[name][1], "decode_tokens_per_s_median": float(np.median(v)),
                                "rounds": v} for name, v in rounds.items()}}
    first = names[0]
    print(f"load average {load_start[0]:.1f} -> {report['load_average_end'][0]:.1f}, {args.threads} threads, "
          f"{args.rounds} rounds of {args.new_tokens} tokens, each model in its own process; copy "
          f"{bandwidth['copy_gb_per_s']:.1f} GB/s, read {bandwidth['read_gb_per_s']:.1f} GB/s right after")
    print(f"| model | settings | decode tok/s (median) | vs {first} | median of per-round ratios to {first} "
          "[95% bootstrap interval] |")
    print("|---|---|---|---|---|")
    resample = np.random.default_rng(0).integers(0, args.rounds, (2000, args.rounds))
    for name, rec in report["models"].items():
        ratios = np.array(rec["rounds"]) / np.array(rounds[first])
        ratio = np.median(ratios)
        low, high = np.percentile(np.median(ratios[resample], axis=1), [2.5, 97.5])
        rec["median_round_ratio_to_first"] = float(ratio)
        rec["ratio_interval_95"] = [float(low), float(high)]
        print(f"| {name} | {rec['settings']} | {rec['decode_tokens_per_s_median']:.1f} | "
              f"{rec['decode_tokens_per_s_median'] / report['models'][first]['decode_tokens_per_s_median']:.2f}x | "
              f"{ratio:.2f}x [{low:.2f}-{high:.2f}] |")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
