"""The LM head at 4 bits on top of a cached quantized body: rounding against GPTQ, tied against
untied. One process, torch, 1 thread; perplexity on the last ``--eval-tokens`` evaluation tokens, and each
head's perplexity against the f32 head's as a paired ratio with a 95% interval (the same tokens scored by
both; a bootstrap over blocks of 32 consecutive tokens, since neighbouring tokens' losses are not independent).

    python -m bench.experiments.llm_head_quality --body /tmp/gemini_llm_cache/gptq4ag64oc

The body is a folder ``bench.experiments.llm_q4_quality`` wrote (``gptq4ag64oc``: the ``gptq-asym`` int4 g64 recipe).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os

import torch
import torch.nn.functional as F

from gemini_core.kinds.llm import source, text_data
from gemini_core.kinds.llm.head import head_hessian, untie_head
from gemini_core.kinds.llm.quantize import gptq, rtn


@torch.no_grad()
def token_nll(model, ids: torch.Tensor, context_len: int = 512) -> torch.Tensor:
    """Each scored token's loss, in non-overlapping windows (``metrics.perplexity``'s default protocol)."""
    out = []
    for begin in range(0, ids.numel() - 1, context_len):
        window = ids[begin:begin + context_len].unsqueeze(0)
        logits = model(input_ids=window, use_cache=False).logits[0, :-1].float()
        out.append(F.cross_entropy(logits, window[0, 1:], reduction="none"))
    return torch.cat(out)


def paired_ratio(nll: torch.Tensor, reference: torch.Tensor, block: int = 32, draws: int = 2000) -> list[float]:
    """95% interval of perplexity(nll) / perplexity(reference), resampling blocks of ``block`` tokens."""
    diff = (nll - reference)[: nll.numel() // block * block].reshape(-1, block).mean(1).double()
    picks = torch.randint(0, diff.numel(), (draws, diff.numel()), generator=torch.Generator().manual_seed(0))
    means = diff[picks].mean(1)
    return [math.exp(float(torch.quantile(means, 0.025))), math.exp(float(torch.quantile(means, 0.975)))]


def nll_with_head(body, weight: torch.Tensor, ids: torch.Tensor, tied: bool) -> torch.Tensor:
    model = copy.deepcopy(body)
    if not tied:
        untie_head(model)
    with torch.no_grad():
        model.get_output_embeddings().weight.copy_(weight)  # tied: the embedding takes the same rows
    return token_nll(model, ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--body", required=True, help="a quantized model folder (bench.experiments.llm_q4_quality's cache)")
    parser.add_argument("--eval-tokens", type=int, default=1024)
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = source.load_causal_lm("smollm2")
    split = text_data.load_split()
    ids = text_data.evaluation_ids(lm.tokenizer, split, args.eval_tokens)
    calib = text_data.calibration_batch(lm.tokenizer, split, args.calib_samples, 256)
    body = source.load_local(args.body).model
    hessian = head_hessian(body, calib)
    w = body.get_output_embeddings().weight.detach().clone()
    rows = [("f32 head", w, False)]
    for symmetric in (True, False):
        for group in (64, 32):
            kind = f"{'sym' if symmetric else 'asym'} g{group}"
            rows.append((f"RTN 4-bit {kind}, clipped", rtn(w, 4, group, symmetric, clip=True), False))
            rows.append((f"GPTQ 4-bit {kind}, act-order, clipped",
                         gptq(w, hessian, 4, group, symmetric, act_order=True, clip=True).to(w.dtype), False))
    rows.append(("GPTQ 4-bit sym g64, tied (the embedding rounded too)", rows[2][1], True))
    results, reference = [], None
    for name, weight, tied in rows:
        nll = nll_with_head(body, weight, ids, tied)
        reference = nll if reference is None else reference
        ppl = math.exp(float(nll.mean()))
        low, high = paired_ratio(nll, reference)
        results.append({"head": name, "perplexity": ppl, "tokens_scored": nll.numel(),
                        "ratio_to_f32_head": ppl / math.exp(float(reference.mean())),
                        "ratio_interval_95": [low, high], "load_average_1m": os.getloadavg()[0]})
        print(f"| {name} | {ppl:.3f} | {results[-1]['ratio_to_f32_head']:.3f} ({low:.3f}-{high:.3f}) | "
              f"load {os.getloadavg()[0]:.1f} |", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"body": args.body, "eval_tokens": args.eval_tokens, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
