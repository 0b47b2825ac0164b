"""LLM figures on SmolLM2-135M with the built-in text (CPython pydoc topics).

    python -m bench.experiments.llm_figures --figures fp32,prune,quant,int8 --threads 2
    python -m bench.experiments.llm_figures --figures recovery --steps 20 --temperature 1
    python -m bench.experiments.llm_figures --figures recovery --steps 40 --modes finetune,distill,distill-features
    python -m bench.experiments.llm_figures --figures compressed
    python -m bench.experiments.llm_figures --figures zeroshot --sst2 PATH/sst2/train_subset_first5000.tsv

Evaluation: the last ``--eval-tokens`` tokens of the held-out evaluation part, windows of
``--context`` tokens (stride = context). Calibration: the first ``--calib-samples`` x
``--calib-len`` tokens of the calibration part. Each line of the output file is one variant.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path

import torch

from gemini_core.kinds.llm import metrics, prune, quantize, source, structured, text_data

FIGURES = {
    "fp32": [("fp32", None, {})],
    "prune": [(f"prune {m} 50%", "prune", {"method": m, "sparsity": 0.5})
              for m in ("magnitude", "wanda", "sparsegpt")],
    "prune24": [(f"prune {m} 2:4", "prune", {"method": m, "pattern": "2:4"})
                for m in ("magnitude", "wanda", "sparsegpt")],
    "quant": [(f"quant {m} 4-bit g64", "quantize", {"method": m, "bits": 4, "group_size": 64})
              for m in ("rtn", "gptq", "awq")],
    "quant3": [(f"quant {m} 3-bit g64", "quantize", {"method": m, "bits": 3, "group_size": 64})
               for m in ("rtn", "gptq", "awq")],
    "structured": [("structured MLP channels 25%", "structured", {"mlp_ratio": 0.25}),
                   ("structured KV head groups 1 of 3", "structured", {"head_ratio": 0.34})],
    "int8": [("quant rtn 8-bit per-channel", "quantize", {"method": "rtn", "bits": 8}),
             ("quant rtn 8-bit g64", "quantize", {"method": "rtn", "bits": 8, "group_size": 64})],
}


def environment(threads: int) -> dict:
    flags = ""
    if Path("/proc/cpuinfo").is_file():
        line = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
        flags = " ".join(f for f in line.split() if f.startswith(("avx512f", "avx2", "amx", "avx512_vnni")))
    return {"threads": threads, "loadavg_1m": os.getloadavg()[0], "cpu_flags": flags,
            "torch": torch.__version__, "python": platform.python_version(),
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def apply(model, kind, options, calib):
    if kind == "prune":
        return prune.prune_model(model, calib_ids=calib, **options)
    if kind == "quantize":
        return quantize.quantize_model(model, calib_ids=calib, **options)
    if kind == "structured":
        return structured.prune_structured(model, calib, **options)
    return {}


def run_variant(base, name, kind, options, calib, eval_ids, args) -> dict:
    model = copy.deepcopy(base) if kind else base
    record = {"variant": name, **environment(args.threads)}
    record.update(apply(model, kind, options, calib))
    start = time.perf_counter()
    record.update(metrics.perplexity(model, eval_ids, args.context))
    record["eval_seconds"] = round(time.perf_counter() - start, 1)
    record["loadavg_1m_after"] = os.getloadavg()[0]
    return record


def recovery_settings(args) -> dict:
    """What each name in --modes trains: the same steps, batches, optimizer, lr and seed for all."""
    return {"finetune": {"mode": "finetune"},
            "distill": {"mode": "distill"},
            "distill-mix": {"mode": "distill", "alpha": args.alpha},
            "distill-features": {"mode": "distill", "hidden_weight": args.hidden_weight}}


def recovery(base, tokenizer, split, calib, eval_ids, args):
    from gemini_core.kinds.llm import distill

    settings = recovery_settings(args)
    pruned = copy.deepcopy(base)
    info = prune.prune_model(pruned, "magnitude", 0.5)
    start_ppl = metrics.perplexity(pruned, eval_ids, args.context)["perplexity"]
    # Training rows: the start of the calibration part (never the evaluation part), each row seen once.
    train = text_data.calibration_batch(tokenizer, split, args.steps * args.batch, args.train_len)
    for name in args.modes.split(","):
        if name not in settings:
            raise SystemExit(f"unknown recovery mode {name!r}; choose from {', '.join(settings)}")
        student = copy.deepcopy(pruned)
        result = distill.recover(student, base, train, steps=args.steps, batch_size=args.batch,
                                 lr=args.lr, temperature=args.temperature, **settings[name])
        record = {"variant": f"recovery {name} after magnitude 50%", **environment(args.threads),
                  "pruned": info, "perplexity_before": start_ppl, **result}
        record.update(metrics.perplexity(student, eval_ids, args.context))
        yield record


def compressed(base, tokenizer, calib, eval_ids, args):
    """Quantize, write compressed-tensors pack-quantized safetensors, reload with transformers, and
    compare perplexity and file size with the float point and the fp32 model's safetensors."""
    import tempfile

    from gemini_core.kinds.llm import compressed_export

    with tempfile.TemporaryDirectory() as tmp:
        base.save_pretrained(Path(tmp) / "fp32", safe_serialization=True)
        fp32_bytes = sum(p.stat().st_size for p in (Path(tmp) / "fp32").glob("*.safetensors"))
    for method, bits, group in [("rtn", 4, 64), ("rtn", 8, None), ("gptq-asym", 4, 64)]:
        model = copy.deepcopy(base)
        info = quantize.quantize_model(model, method, bits, group, calib_ids=calib)
        float_ppl = metrics.perplexity(model, eval_ids, args.context)["perplexity"]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "ct"
            summary = compressed_export.export_compressed(model, tokenizer, out, bits, group,
                                                          quantize.RECIPES[method].symmetric)
            reloaded = compressed_export.load_compressed(out)
        record = {"variant": f"compressed-tensors {method} {bits}-bit g{group or 'channel'}",
                  **environment(args.threads), **info, **summary, "fp32_safetensors_bytes": fp32_bytes,
                  "size_ratio_vs_fp32": summary["file_bytes"] / fp32_bytes,
                  "perplexity_float_point": float_ppl}
        record.update(metrics.perplexity(reloaded, eval_ids, args.context))
        record["perplexity_rel_diff"] = abs(record["perplexity"] - float_ppl) / float_ppl
        yield record


def zero_shot(base, tokenizer, args):
    """Zero-shot SST-2 sentiment by label words on the first --zs-examples rows of --sst2, the first
    5,000 rows of GLUE SST-2 train (sentence TAB label), read from the data folder beside the checkout by
    default; the product itself never reads that folder."""
    import csv

    path = Path(args.sst2)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))[: args.zs_examples]
    texts, labels = [r["sentence"].strip() for r in rows], [r["label"] for r in rows]
    words = {"1": " positive", "0": " negative"}
    template = "Review: {text}\nSentiment (positive or negative):"
    for name, kind, options in [("fp32", None, {}), *FIGURES["int8"][:1],
                                ("quant rtn 4-bit g64", "quantize", {"method": "rtn", "bits": 4, "group_size": 64})]:
        model = copy.deepcopy(base) if kind else base
        apply(model, kind, options, None)
        record = {"variant": f"zero-shot SST-2 {name}", **environment(args.threads), "template": template}
        record.update(metrics.zero_shot_accuracy(model, tokenizer, texts, labels, words, template))
        yield record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", default="fp32,prune,quant,int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-tokens", type=int, default=8192)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--calib-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--train-len", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--modes", default="finetune,distill",
                        help="recovery modes, same step budget: finetune, distill, distill-mix, distill-features")
    parser.add_argument("--alpha", type=float, default=0.5, help="distill-mix: alpha * KD + (1 - alpha) * CE")
    parser.add_argument("--hidden-weight", type=float, default=1.0,
                        help="distill-features: weight of the per-block hidden-state loss added to KD")
    parser.add_argument("--sst2", default="../shared/data/sst2/train_subset_first5000.tsv")
    parser.add_argument("--zs-examples", type=int, default=200)
    parser.add_argument("--out", default="bench/results/llm_figures.jsonl")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lm = source.load_causal_lm("smollm2", progress=print)
    split = text_data.load_split()
    calib = text_data.calibration_batch(lm.tokenizer, split, args.calib_samples, args.calib_len)
    eval_ids = text_data.evaluation_ids(lm.tokenizer, split, args.eval_tokens)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for figure in args.figures.split(","):
        if figure == "zeroshot":
            records = zero_shot(lm.model, lm.tokenizer, args)
        elif figure == "recovery":
            records = recovery(lm.model, lm.tokenizer, split, calib, eval_ids, args)
        elif figure == "compressed":
            records = compressed(lm.model, lm.tokenizer, calib, eval_ids, args)
        else:
            records = (run_variant(lm.model, *v, calib, eval_ids, args) for v in FIGURES[figure])
        for record in records:
            print(json.dumps(record), flush=True)
            with open(out, "a") as handle:
                handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
