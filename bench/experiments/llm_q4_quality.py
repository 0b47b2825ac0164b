"""4-bit recipes on SmolLM2 against the goal of a perplexity within 15% of fp32: one recipe per process.

    python -m bench.experiments.llm_q4_quality --recipe "gptq int4 asym g64" --threads 1

Protocol of ``bench.experiments.llm_runtimes``: perplexity on the last ``--eval-tokens`` (1,024) tokens of the
evaluation part, 512-token windows; calibration on the first N x 256 tokens of the calibration part.
MB read per token is computed from the grid as OpenVINO stores it (``ov_weights``): codes at the
layer's bits, one f16 scale per group, one zero point per group for an asymmetric grid (u4 / u8),
the tied LM head at int8 per channel. The compressed model is kept under ``--cache`` (as the runtime
bench's POINTS table names it), so ``bench.experiments.llm_runtimes`` times it without calibrating again.
Each record is appended to ``--out``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch

from bench.experiments.llm_figures import environment
from gemini_core.kinds.llm import metrics, source, text_data
from gemini_core.kinds.llm.calibrate import linear_layers
from gemini_core.kinds.llm.quantize import RECIPES as METHODS
from gemini_core.kinds.llm.quantize import quantize_model

# name: (cache key, quantize_model options, calibration samples of 256 tokens)
RECIPES = {
    "fp32": ("float", None, 0),
    "rtn int4 g64": ("rtn4g64", {"method": "rtn", "bits": 4, "group_size": 64}, 0),
    "rtn int4 asym g64 clip": ("rtn4ag64c", {"method": "rtn", "bits": 4, "group_size": 64, "symmetric": False,
                                             "clip": True}, 0),
    "gptq int4 g64": ("gptq4g64", {"method": "gptq", "bits": 4, "group_size": 64}, 32),
    "gptq int4 asym g64": ("gptq4ag64", {"method": "gptq", "bits": 4, "group_size": 64, "symmetric": False}, 32),
    "gptq int4 g64 act-order": ("gptq4g64o", {"method": "gptq", "bits": 4, "group_size": 64, "act_order": True}, 32),
    "gptq int4 asym g64 act-order": ("gptq4ag64o", {"method": "gptq", "bits": 4, "group_size": 64,
                                                    "symmetric": False, "act_order": True}, 32),
    "gptq int4 g64 clip": ("gptq4g64c", {"method": "gptq", "bits": 4, "group_size": 64, "clip": True}, 32),
    "gptq int4 asym g64 clip": ("gptq4ag64c", {"method": "gptq", "bits": 4, "group_size": 64, "symmetric": False,
                                               "clip": True}, 32),
    "gptq int4 asym g64 act-order clip": ("gptq4ag64oc", {"method": "gptq", "bits": 4, "group_size": 64,
                                                          "symmetric": False, "act_order": True, "clip": True}, 32),
    "gptq int4 asym g64 act-order clip calib128": ("gptq4ag64ocx128", {"method": "gptq", "bits": 4, "group_size": 64,
                                                                       "symmetric": False, "act_order": True,
                                                                       "clip": True}, 128),
    # the product sweep's default calibration (LLMSettings.calib_samples = 16)
    "gptq int4 asym g64 act-order clip calib16": ("gptq4ag64ocx16", {"method": "gptq-asym", "bits": 4,
                                                                     "group_size": 64}, 16),
    "gptq int4 g64 calib128": ("gptq4g64x128", {"method": "gptq", "bits": 4, "group_size": 64}, 128),
    "gptq int4 g32": ("gptq4g32", {"method": "gptq", "bits": 4, "group_size": 32}, 32),
    # symmetric grids that GGUF's Q4_0 blocks (32 weights, one f16 scale, no zero point) hold exactly
    "gptq int4 g64 act-order clip": ("gptq4g64oc", {"method": "gptq", "bits": 4, "group_size": 64,
                                                    "act_order": True, "clip": True}, 32),
    "gptq int4 g32 act-order clip": ("gptq4g32oc", {"method": "gptq", "bits": 4, "group_size": 32,
                                                    "act_order": True, "clip": True}, 32),
    # + the LM head by GPTQ too (quantize.RECIPES["gptq-sym-head"]): every matrix in GGUF q4_0 blocks
    "gptq-sym-head int4 g32": ("gptq4g32och", {"method": "gptq-sym-head", "bits": 4, "group_size": 32}, 32),
    "gptq-sym-head int4 g64": ("gptq4g64och", {"method": "gptq-sym-head", "bits": 4, "group_size": 64}, 32),
}


def mb_per_token(model, options: dict | None, vocab: int, hidden: int) -> float:
    """MiB of weights one decoded token reads, as OpenVINO stores this grid (int8 per-channel head, or the
    point's grid when the recipe quantizes the head)."""
    total = 0.0
    matrices = dict(linear_layers(model))
    if options is not None and METHODS[options["method"]].head:
        matrices["lm_head"] = model.get_output_embeddings()
    for name, lin in matrices.items():
        rows, cols = lin.weight.shape
        if options is None:
            total += rows * cols * 4
            continue
        bits = options.get("overrides", {}).get(name, options["bits"])
        group = options["group_size"] if bits == options["bits"] else None
        groups = rows * (cols // (group or cols))
        symmetric = options.get("symmetric", METHODS[options["method"]].symmetric)
        zero = 0 if symmetric else (0.5 if bits <= 4 else 1)
        total += rows * cols * bits / 8 + groups * (2 + zero)
    if "lm_head" not in matrices:
        total += vocab * hidden + vocab * 2 if options is not None else vocab * hidden * 4
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True, choices=sorted(RECIPES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-tokens", type=int, default=1024)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--cache", default="/tmp/gemini_llm_cache")
    parser.add_argument("--out", default="bench/results/llm_q4_quality.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    key, options, samples = RECIPES[args.recipe]
    lm = source.load_causal_lm("smollm2")
    split = text_data.load_split()
    eval_ids = text_data.evaluation_ids(lm.tokenizer, split, args.eval_tokens)
    record = {"recipe": args.recipe, **environment(args.threads), "calibration_samples": samples,
              "calibration_seq_len": 256 if samples else 0}
    model = lm.model
    folder = Path(args.cache) / key if args.cache else None
    if options is not None:
        if folder is not None and (folder / source.META_FILE).is_file():
            model = source.load_local(folder).model
            record["from_cache"] = str(folder)
        else:
            calib = text_data.calibration_batch(lm.tokenizer, split, samples, 256) if samples else None
            model = copy.deepcopy(lm.model)
            record.update(quantize_model(model, calib_ids=calib, **options))
            record["calibration_loadavg_1m_after"] = os.getloadavg()[0]
            if folder is not None:
                source.save_hf_folder(model, lm.tokenizer, folder, {"name": key, "calibration_samples": samples,
                                                                    **record})
    start = time.perf_counter()
    record.update(metrics.perplexity(model, eval_ids, args.context))
    record["eval_seconds"] = round(time.perf_counter() - start, 1)
    cfg = lm.model.config
    record["mb_per_token"] = round(mb_per_token(model, options, cfg.vocab_size, cfg.hidden_size), 2)
    record["loadavg_1m_after"] = os.getloadavg()[0]
    with open(args.out, "a") as fh:
        fh.write(json.dumps(record) + "\n")
    print(f"{args.recipe}: perplexity {record['perplexity']:.3f}, {record['mb_per_token']:.1f} MiB/token, "
          f"calibration {record.get('seconds', 0)} s, load {record['loadavg_1m_after']:.1f}")


if __name__ == "__main__":
    main()
