"""SmolLM2 speed, memory and export figures: prefill latency, decode tokens/s, peak memory,
file sizes of the safetensors and GGUF exports, and perplexity after reloading each export.

    python -m bench.experiments.llm_export --threads 2
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from bench.experiments.llm_figures import environment
from gemini_core.kinds.llm import metrics, source, text_data
from gemini_core.kinds.llm.gguf_export import export_gguf


def speed(model, eval_ids, args) -> dict:
    record = {}
    prefill, memory = metrics.peak_rss_mb(
        lambda: metrics.prefill_latency(model, eval_ids[:args.prefill_tokens], warmup=2, repeats=args.repeats))
    record.update(prefill)
    record.update(memory)
    record.update(metrics.decode_tokens_per_s(model, eval_ids[:args.prompt_tokens], args.new_tokens, repeats=2))
    record["parameter_mb"] = metrics.parameter_mb(model)
    return record


def exports(lm, eval_ids, args, folder: Path):
    base = metrics.perplexity(lm.model, eval_ids, args.context)
    yield {"variant": "fp32 in memory", **base}
    hf = source.save_hf_folder(lm.model, lm.tokenizer, folder / "hf", lm.metadata)
    again = source.load_causal_lm(f"hf:{hf}")
    ppl = metrics.perplexity(again.model, eval_ids, args.context)
    yield {"variant": "safetensors export reloaded", "file_mb": metrics.file_size_mb(hf),
           "identical_perplexity": ppl == base, **ppl}
    for qtype in args.gguf_types.split(","):
        path = export_gguf(lm.model, lm.tokenizer, folder / f"model-{qtype}.gguf", qtype)
        model, _ = source.load_gguf(path)
        ppl = metrics.perplexity(model, eval_ids, args.context)
        yield {"variant": f"GGUF {qtype} export reloaded by transformers", "file_mb": metrics.file_size_mb(path),
               "identical_perplexity": ppl == base, **ppl}
        del model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-tokens", type=int, default=2048)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--prefill-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--gguf-types", default="f32,q8_0")
    parser.add_argument("--out", default="bench/results/llm_export.jsonl")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lm = source.load_causal_lm("smollm2", progress=print)
    eval_ids = text_data.evaluation_ids(lm.tokenizer, text_data.load_split(), args.eval_tokens)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = [{"variant": "fp32 speed", **speed(lm.model, eval_ids, args)}]
    gguf_src = source.smollm2_gguf()
    records.append({"variant": "source GGUF (Q4_1 blocks, Q8_0 embeddings)", "file_mb": metrics.file_size_mb(gguf_src)})
    with tempfile.TemporaryDirectory() as tmp:
        for record in exports(lm, eval_ids, args, Path(tmp)):
            records.append(record)
            print(json.dumps(record), flush=True)
    with open(out, "a") as handle:
        for record in records:
            handle.write(json.dumps({**record, **environment(args.threads)}) + "\n")
    print(json.dumps(records[:2], indent=1))


if __name__ == "__main__":
    main()
