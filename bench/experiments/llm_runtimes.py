"""SmolLM2 on real runtimes against the hand-made optimum-intel recipe, measured in one run.

Every point is loaded first; then decoding (greedy, ``--new-tokens`` after a ``--prompt-tokens``
prompt) is timed in rounds, every point once per round in a rotated order, so load on the shared
machine falls on all of them. The peer (``OVModelForCausalLM.from_pretrained(folder, export=True)``
+ NNCF data-free weights) runs in a worker process with ``--peer-python`` (optimum-intel 2.2 does
not import with transformers >= 5.6; a virtual environment with transformers 5.5 runs it).

    python -m bench.experiments.llm_runtimes --threads 2 --peer-python /tmp/peer-venv/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.experiments.llm_figures import environment
from bench.experiments.llm_q4_quality import RECIPES as QUALITY_RECIPES
from gemini_core.kinds.llm import metrics, source, text_data
from gemini_core.kinds.llm.quantize import quantize_model
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings, kv_elements_per_position
from gemini_core.kinds.llm.runtimes.measure import _greedy, bandwidth_limit, copy_bandwidth_gb_s, prefill
from gemini_core.kinds.llm.runtimes.openvino_llm import OpenVINORunner
from gemini_core.kinds.llm.runtimes.ov_convert import convert_stateful
from gemini_core.kinds.llm.runtimes.ov_weights import compress_matmul_weights
from gemini_core.kinds.llm.runtimes.torch_eager import TorchRunner
from gemini_core.kinds.llm.structured import prune_structured

# name: (torch model key, runtime, weight bits, group, head bits, head group, kv cache precision)
POINTS = {
    "torch fp32": ("float", "torch", None, None, None, None, None),
    "openvino fp32": ("float", "openvino", None, None, None, None, None),
    "gptq int4 g64 grid check (f32 head and KV)": ("gptq4g64", "openvino", 4, 64, None, None, "f32"),
    "gptq int4 g64": ("gptq4g64", "openvino", 4, 64, 8, None, None),
    "rtn int4 g64": ("rtn4g64", "openvino", 4, 64, 8, None, None),
    "gptq int4 g64 + int4 head": ("gptq4g64", "openvino", 4, 64, 4, 64, None),
    "rtn int4 g192 + int4 head": ("rtn4g192", "openvino", 4, 192, 4, 192, None),
    "rtn int8": ("rtn8", "openvino", 8, None, 8, None, None),
    # not in the default run (GPTQ takes many minutes on a loaded 2-core machine): pass --points
    "gptq int4 g192 + int4 head": ("gptq4g192", "openvino", 4, 192, 4, 192, None),
    "mlp-25% + gptq int4 g64 + int4 head": ("mlp25gptq4g64", "openvino", 4, 64, 4, 64, None),
    "gptq int8": ("gptq8", "openvino", 8, None, 8, None, None),
    "torch gptq int4 g64": ("gptq4g64", "torch", None, None, None, None, None),
    # the 4-bit recipe within 15% of fp32 perplexity (bench.experiments.llm_q4_quality, method gptq-asym): zero points + activation order +
    # range clipping, stored on its asymmetric grid (u4 codes - u4 zero point, x f16 scale)
    "gptq-asym int4 g64": ("gptq4ag64oc", "openvino", 4, 64, 8, None, None),
    # the symmetric recipe with a calibrated head (quantize.RECIPES["gptq-sym-head"]): the head is stored on
    # its own 4-bit grid (ov_weights), whatever head_bits says
    "gptq-sym-head int4 g32": ("gptq4g32och", "openvino", 4, 32, 8, None, None),
    "gptq-sym-head int4 g64": ("gptq4g64och", "openvino", 4, 64, 8, None, None),
}
DEFAULT_POINTS = list(POINTS)[:8]
PEERS = {"peer int4 g64 (optimum-intel data-free)": "int4-g64", "peer int8 (optimum-intel)": "int8",
         "peer fp32 (optimum-intel)": "fp32"}
DEFAULT_PEERS = list(PEERS)[:2]


def build_model(base, key: str, calib, tokenizer, cache: Path | None):
    """The float model compressed as ``key`` says; kept as safetensors under ``cache`` (GPTQ takes
    minutes on a loaded 2-core machine) and reloaded from there when present."""
    import copy

    if key == "float":
        return base
    folder = cache / key if cache else None
    if folder is not None and (folder / source.META_FILE).is_file():
        return source.load_local(folder).model
    model = copy.deepcopy(base)
    recipe = next((options for k, options, _ in QUALITY_RECIPES.values() if k == key and options), None)
    if recipe is not None:  # a recipe of bench.experiments.llm_q4_quality (kept under the same key there)
        record = quantize_model(model, calib_ids=calib, **recipe)
        if folder is not None:
            source.save_hf_folder(model, tokenizer, folder, {"name": key, "calibration_samples": calib.shape[0],
                                                            **record})
        return model
    if key.startswith("mlp25"):
        prune_structured(model, calib, mlp_ratio=0.25)
        key = key[len("mlp25"):]
    method = "gptq" if key.startswith("gptq") else "rtn"
    bits = int(key[len(method)])
    group = int(key.split("g")[-1]) if "g" in key[len(method):] else None
    record = quantize_model(model, method, bits, group, calib_ids=calib if method != "rtn" else None)
    if folder is not None:
        source.save_hf_folder(model, tokenizer, folder, {"name": key, "calibration_samples": calib.shape[0], **record})
    return model


class Peer:
    def __init__(self, python: str, folder: Path, recipe: str, threads: int):
        self.proc = subprocess.Popen([python, str(Path(__file__).with_name("llm_peer_worker.py")), str(folder),
                                      recipe, str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.info = self.ask(None)

    def ask(self, cmd):
        if cmd is not None:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"error": "the peer worker exited"}

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


def load_points(args, lm, calib, settings) -> dict:
    models, ov_base, runners = {}, {}, {}
    for name in args.points.split(","):
        key, runtime, bits, group, head_bits, head_group, kv = POINTS[name]
        if key not in models:
            start = time.perf_counter()
            models[key] = build_model(lm.model, key, calib, lm.tokenizer, args.cache and Path(args.cache))
            print(f"# built {key} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        if runtime == "torch":
            runners[name] = TorchRunner(models[key], settings)
            continue
        if key not in ov_base:
            start = time.perf_counter()
            ov_base[key] = convert_stateful(models[key])
            print(f"# converted {key} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        ov_model = ov_base[key].clone()
        weights = {}
        if bits is not None or head_bits is not None:
            weights = compress_matmul_weights(ov_model, bits, group, head_bits, head_group, lm.model.config.vocab_size)
        meta = {"kv_elements_per_position": kv_elements_per_position(models[key].config), "weights": weights}
        run_settings = LLMRunSettings(threads=args.threads, kv_cache_precision=kv)
        runners[name] = OpenVINORunner(ov_model, meta, run_settings)
    return runners


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--prefill-tokens", type=int, default=128)
    parser.add_argument("--eval-tokens", type=int, default=2048)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--points", default=",".join(DEFAULT_POINTS))
    parser.add_argument("--peers", default=",".join(DEFAULT_PEERS))
    parser.add_argument("--peer-python", default=sys.executable)
    # decode-forward: the peer's model driven by forward calls in the same greedy loop as the product's;
    # decode: its generate(), which with optimum-intel 2.2 + transformers 5.5.4 ran at 9 tokens/s here
    parser.add_argument("--peer-decode", choices=("decode-forward", "decode"), default="decode-forward")
    parser.add_argument("--cache", default="", help="folder keeping the compressed models between runs")
    parser.add_argument("--out", default="bench/results/llm_runtimes.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = LLMRunSettings(threads=args.threads, new_tokens=args.new_tokens, prompt_tokens=args.prompt_tokens,
                              prefill_tokens=args.prefill_tokens, context_len=args.context)
    lm = source.load_causal_lm("smollm2")
    split = text_data.load_split()
    eval_ids = text_data.evaluation_ids(lm.tokenizer, split, args.eval_tokens)
    calib = text_data.calibration_batch(lm.tokenizer, split, args.calib_samples, 256)
    started = {"environment": environment(args.threads), "args": vars(args)}
    runners = load_points(args, lm, calib, settings)
    peers, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = Path(tmp) / "ids.json"
        ids_file.write_text(json.dumps(eval_ids.tolist()))
        for name in [p for p in args.peers.split(",") if p]:
            peer = Peer(args.peer_python, lm.metadata["folder"], PEERS[name], args.threads)
            if "error" in peer.info:
                results[name] = {"error": peer.info["error"]}
                continue
            peers[name] = peer
            results[name] = {**peer.info, **peer.ask({"cmd": "ppl", "ids_file": str(ids_file), "context": args.context})}
            peer.ask({"cmd": args.peer_decode, "prompt": eval_ids[:args.prompt_tokens].tolist(),
                      "new_tokens": args.new_tokens})
        for name, runner in runners.items():
            results[name] = {**runner.describe(), **metrics.perplexity(runner.as_model(), eval_ids, args.context),
                             "weight_bytes": runner.weight_bytes_per_token(),
                             "kv_bytes_per_position": runner.kv_bytes_per_position(),
                             **prefill(runner, eval_ids[:args.prefill_tokens], 3)}
            _greedy(runner, eval_ids[:args.prompt_tokens], args.new_tokens)  # warm-up
        prompt = eval_ids[:args.prompt_tokens]
        order = list(runners) + list(peers)
        for r in range(args.rounds):
            shift = r % len(order)
            for name in order[shift:] + order[:shift]:
                if name in peers:
                    out = peers[name].ask({"cmd": args.peer_decode, "prompt": prompt.tolist(),
                                           "new_tokens": args.new_tokens})
                    tps, ttft = out["decode_tokens_per_s"], out["ttft_ms"]
                else:
                    _, first_s, rest_s = _greedy(runners[name], prompt, args.new_tokens)
                    tps, ttft = (args.new_tokens - 1) / rest_s, first_s * 1e3
                results[name].setdefault("rounds_tokens_per_s", []).append(round(tps, 2))
                results[name].setdefault("rounds_ttft_ms", []).append(round(ttft, 1))
            print(f"# round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
        for peer in peers.values():
            peer.close()
    bandwidth = copy_bandwidth_gb_s(args.threads)
    mean_context = args.prompt_tokens + args.new_tokens / 2
    # the peers' KV cache: OpenVINO's CPU default (u8 here, as the product's openvino point reports)
    peer_kv = kv_elements_per_position(lm.model.config)
    for name, rec in results.items():
        if "rounds_tokens_per_s" not in rec:
            continue
        rec["decode_tokens_per_s"] = statistics.median(rec["rounds_tokens_per_s"])
        rec["ttft_ms"] = statistics.median(rec["rounds_ttft_ms"])
        kv_bytes = rec.get("kv_bytes_per_position", peer_kv) * mean_context
        limit = bandwidth_limit(bandwidth["copy_gb_per_s"], rec["weight_bytes"] + kv_bytes)
        rec["bandwidth_limit_tokens_per_s"] = limit
        rec["fraction_of_bandwidth_limit"] = rec["decode_tokens_per_s"] / limit
    out = {**started, "bandwidth": bandwidth, "load_average_end": os.getloadavg(), "results": results}
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    print_table(out)


def print_table(out: dict) -> None:
    res = out["results"]
    ref = res.get("torch fp32", {}).get("perplexity")
    peer = res.get("peer int4 g64 (optimum-intel data-free)", {}).get("decode_tokens_per_s")
    print(f"copy bandwidth {out['bandwidth']['copy_gb_per_s']:.1f} GB/s ({out['bandwidth']['copy_threads']} threads), "
          f"load {out['environment']['loadavg_1m']:.1f} -> {out['load_average_end'][0]:.1f}")
    print("| point | perplexity | vs fp32 | decode tok/s | vs peer int4 | TTFT ms | MB/token | % of limit |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rec in res.items():
        if "error" in rec:
            print(f"| {name} | {rec['error']} |")
            continue
        tps = rec.get("decode_tokens_per_s", float("nan"))
        rel = f"{rec['perplexity'] / ref - 1:+.1%}" if ref else "-"
        vs = f"{tps / peer:.2f}x" if peer else "-"
        print(f"| {name} | {rec['perplexity']:.3f} | {rel} | {tps:.1f} | {vs} | {rec.get('ttft_ms', 0):.0f} | "
              f"{rec['weight_bytes'] / 2**20:.1f} | {rec.get('fraction_of_bandwidth_limit', 0):.0%} |")


if __name__ == "__main__":
    main()
