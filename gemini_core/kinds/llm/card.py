"""The model card (README.md) of an LLM export: what was done, what was measured, and how to reload it."""
from __future__ import annotations

import math


def _num(value, fmt: str) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return format(v, fmt) if math.isfinite(v) else "–"


def llm_model_card(recipe: dict) -> str:
    record = recipe.get("record") or {}
    llm = recipe.get("llm") or {}
    meta = recipe.get("source_model") or {}
    source = ((recipe.get("scenario") or {}).get("arch") or {}).get("source")
    lines = [f"# {recipe.get('label', 'compressed language model')}", "",
             f"Compressed with Gemini Compression Studio from `{source}` ({meta.get('name', 'a local causal LM')}).",
             ""]
    if meta.get("source_bits"):
        bits, group = meta.get("source_bits"), meta.get("source_group_size")
        lines += [f"**Source weights were already quantized**: {meta.get('source_format')} ({bits}-bit, "
                  f"groups of {group}; token embedding {meta.get('source_embedding_format')}). "
                  f"Storing them again at {bits} bits with groups of {group} reproduces them and measures nothing.",
                  ""]
    lines += ["## Measured (this machine)", "",
              "| figure | value |", "|---|---|",
              f"| perplexity (lower is better) | {_num(record.get('perplexity'), '.4f')} |",
              f"| text, context / stride / tokens scored | {llm.get('text_source')}, {record.get('context_len')} / "
              f"{record.get('stride')} / {record.get('tokens_scored')} |",
              f"| prefill p50 (p10-p90) | {_num(record.get('prefill_ms_p50'), '.1f')} ms "
              f"({_num(record.get('prefill_ms_p10'), '.1f')}-{_num(record.get('prefill_ms_p90'), '.1f')}) |",
              f"| decode | {_num(record.get('decode_tokens_per_s'), '.1f')} tokens/s |",
              f"| peak memory | {_num(record.get('peak_rss_mb'), '.0f')} MB |",
              f"| bytes written ({record.get('size_written', 'float32 safetensors')}) | {record.get('size_bytes')} |",
              f"| threads, load (1 min) | {record.get('threads')}, {record.get('load_avg_1m')} |"]
    if record.get("accuracy") is not None:
        lines.append(f"| zero-shot accuracy | {_num(record['accuracy'], '.3f')} (n={record.get('test_n')}) |")
    lines += ["", "Weights quantized by RTN/GPTQ/AWQ are stored dequantized (float32): the file reproduces the "
              "measured perplexity exactly; RTN and GPTQ points are also packed in `compressed/` (compressed-tensors), "
              "whose bytes are the size above.", "",
              "## Reload", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
              "model = AutoModelForCausalLM.from_pretrained('model')",
              "tokenizer = AutoTokenizer.from_pretrained('model')", "```", ""]
    if llm.get("gguf_file"):
        kind = llm.get("gguf_type") or "f32"
        held = ("its 4-bit grid in the blocks, codes as measured" if kind in ("q4_0", "q4_1") else
                "re-quantized in 32-weight blocks" if kind == "q8_0" else "the weights as measured")
        lines += [f"`{llm['gguf_file']}` holds the same model as GGUF, type {kind} ({held}): llama.cpp runs it "
                  f"(`llama-cli -m {llm['gguf_file']}`); transformers reloads it with "
                  f"`from_pretrained('.', gguf_file='{llm['gguf_file']}')`.", ""]
    lines += ["`python -m gemini_core evaluate <this folder>` measures it again.", ""]
    return "\n".join(lines)
