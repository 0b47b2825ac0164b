"""The hand-made optimum-intel recipe, run as a worker so the bench can time it interleaved with
the product's points (optimum-intel 2.2 needs transformers < 5.6, so it may run in another Python;
see bench/experiments/llm_runtimes.py). Protocol: one JSON object per line on stdin, one reply per line on stdout.

    python bench/experiments/llm_peer_worker.py FOLDER RECIPE THREADS     (RECIPE: fp32 | int8 | int4-g64 | int4-gN)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)  # library chatter goes to stderr; stdout carries the protocol only


def reply(obj: dict) -> None:
    PROTOCOL.write(json.dumps(obj) + "\n")


def export(folder: str, recipe: str, threads: int):
    from optimum.intel import OVModelForCausalLM, OVWeightQuantizationConfig

    config = {"INFERENCE_NUM_THREADS": str(threads)}
    kwargs = {}
    if recipe == "int8":
        kwargs["quantization_config"] = OVWeightQuantizationConfig(bits=8)
    elif recipe.startswith("int4"):
        group = int(recipe.split("-g")[1]) if "-g" in recipe else 64
        kwargs["quantization_config"] = OVWeightQuantizationConfig(bits=4, group_size=group, sym=True)
    else:
        kwargs["load_in_8bit"] = False
    return OVModelForCausalLM.from_pretrained(folder, export=True, ov_config=config, **kwargs)


class TimingStreamer:
    """transformers calls put() with the prompt, then with each new token: the times of those calls."""

    def __init__(self):
        self.times = []

    def put(self, _value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def main() -> None:
    import torch

    from gemini_core.kinds.llm import metrics
    from gemini_core.kinds.llm.runtimes.openvino_llm import matmul_weight_bytes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the Hugging Face model folder to export")
    parser.add_argument("recipe", help="fp32 | int8 | int4-g64 | int4-gN")
    parser.add_argument("threads", type=int)
    args = parser.parse_args()
    folder, recipe, threads = args.folder, args.recipe, args.threads
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        model = export(folder, recipe, threads)
    except Exception as exc:  # reported to the bench as one line, which prints it
        reply({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
        return
    import transformers

    reply({"ready": True, "export_seconds": time.perf_counter() - start, "recipe": recipe,
           "weight_bytes": matmul_weight_bytes(model.model), "transformers": transformers.__version__})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            return
        if cmd["cmd"] == "ppl":
            ids = torch.tensor(json.loads(Path(cmd["ids_file"]).read_text()))

            def forward(input_ids, **_):
                return model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))

            reply(metrics.perplexity(forward, ids, context_len=cmd["context"]))
        elif cmd["cmd"] == "decode-forward":  # the peer's IR driven by the product's greedy loop (forward calls)
            prompt = torch.tensor([cmd["prompt"]])
            n = cmd["new_tokens"]
            with torch.no_grad():
                t0 = time.perf_counter()
                out = model(input_ids=prompt, attention_mask=torch.ones_like(prompt))
                tokens = [int(out.logits[0, -1].argmax())]
                first = time.perf_counter()
                length = prompt.shape[1]
                for _ in range(n - 1):
                    length += 1
                    out = model(input_ids=torch.tensor([[tokens[-1]]]), attention_mask=torch.ones(1, length, dtype=torch.long),
                                past_key_values=out.past_key_values)
                    tokens.append(int(out.logits[0, -1].argmax()))
                last = time.perf_counter()
            reply({"ttft_ms": (first - t0) * 1e3, "decode_tokens_per_s": (n - 1) / (last - first), "tokens": tokens})
        elif cmd["cmd"] == "decode":
            prompt = torch.tensor([cmd["prompt"]])
            n = cmd["new_tokens"]
            streamer = TimingStreamer()
            t0 = time.perf_counter()
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                                 min_new_tokens=n, do_sample=False, streamer=streamer)
            first, last = streamer.times[1], streamer.times[-1]
            reply({"ttft_ms": (first - t0) * 1e3, "decode_tokens_per_s": (n - 1) / (last - first),
                   "tokens": out[0, prompt.shape[1]:].tolist()})


if __name__ == "__main__":
    main()
