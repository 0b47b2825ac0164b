"""Perplexity of the GPTQ int4 g64 SmolLM2 kept by bench.experiments.llm_runtimes (--cache): torch eager vs OpenVINO
with the recovered grid vs OpenVINO with NNCF data-free re-compression of the same weights (head and KV
in f32 for all).

    GEMINI_HOME=... python -m bench.experiments.llm_grid_check /tmp/gemini_llm_cache/gptq4g64
"""
import argparse
import json
import os

import nncf
import torch

from gemini_core.kinds.llm import metrics, source, text_data
from gemini_core.kinds.llm.runtimes.base import LLMRunSettings, kv_elements_per_position
from gemini_core.kinds.llm.runtimes.openvino_llm import OpenVINORunner
from gemini_core.kinds.llm.runtimes.ov_convert import convert_stateful
from gemini_core.kinds.llm.runtimes.ov_weights import compress_matmul_weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the GPTQ int4 g64 model folder llm_runtimes kept under --cache")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    base = source.load_causal_lm("smollm2")
    lm = source.load_local(args.folder)
    split = text_data.load_split()
    ev = text_data.evaluation_ids(base.tokenizer, split, 1024)
    out = {"load_1m": os.getloadavg()[0]}
    out["torch_gptq"] = metrics.perplexity(lm.model, ev, 512)["perplexity"]
    ovm = convert_stateful(lm.model)
    s = LLMRunSettings(kv_cache_precision="f32")
    meta = {"kv_elements_per_position": kv_elements_per_position(lm.model.config)}
    a = ovm.clone()
    meta["weights"] = compress_matmul_weights(a, 4, 64, None, None, lm.model.config.vocab_size)
    out["ov_recovered_grid"] = metrics.perplexity(OpenVINORunner(a, meta, s).as_model(), ev, 512)["perplexity"]
    out["groups_off_grid"] = meta["weights"]["groups_off_grid"]
    b = ovm.clone()
    b = nncf.compress_weights(b, mode=nncf.CompressWeightsMode.INT4_SYM, group_size=64, ratio=1.0,
                              ignored_scope=nncf.IgnoredScope(patterns=[".*lm_head.*", ".*embed.*"], validate=False))
    out["ov_nncf_recompressed"] = metrics.perplexity(OpenVINORunner(b, meta, s).as_model(), ev, 512)["perplexity"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
