"""What storing SmolLM2's tied LM head at 4 bits costs on top of a 4-bit recipe: the head is
28 M of the 134 M weights, so at int4 blocks it is a third of the bytes a token reads.

    GEMINI_HOME=... python -m bench.experiments.llm_q4_head /tmp/gemini_llm_cache/gptq4ag64oc

Perplexity in torch (1 thread) on the 1,024-token protocol of ``bench.experiments.llm_q4_quality``, the head (tied
with the token embedding, as OpenVINO stores it too) rounded to each grid in turn.
"""
import argparse
import os

import torch

from gemini_core.kinds.llm import metrics, source, text_data
from gemini_core.kinds.llm.quantize import rtn

GRIDS = [("int8 per-channel sym", 8, None, True, False), ("int4 g64 sym", 4, 64, True, False),
         ("int4 g64 asym clip", 4, 64, False, True), ("int4 g32 asym clip", 4, 32, False, True)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("body", help="a quantized model folder (llm_q4_quality's cache)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    base = source.load_causal_lm("smollm2")
    ev = text_data.evaluation_ids(base.tokenizer, text_data.load_split(), 1024)
    model = source.load_local(args.body).model
    head = model.lm_head.weight
    original = head.data.clone()
    print(f"head tied to the embedding: {head is model.model.embed_tokens.weight}")
    for name, bits, group, symmetric, clip in GRIDS:
        head.data.copy_(rtn(original, bits, group, symmetric, clip))
        ppl = metrics.perplexity(model, ev, 512)["perplexity"]
        print(f"{name}: perplexity {ppl:.3f} (load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
