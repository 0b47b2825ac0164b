"""GPU rows (only with CUDA): 2:4 semi-structured sparsity, GPU latency and memory.

- MiniLM's architecture (random weights: latency and memory do not depend on their values; the
  packaged pre-trained weights are not needed on the GPU machine) at fp32, bf16, fp16 and fp16 2:4
  semi-structured (encoder Linear layers given a 2:4 pattern), as ``build_execution_model`` builds
  them, timed in interleaved rounds, plus CUDA peak memory per variant;
- ``bench/gpu_check.py``'s rows: 2:4 vs dense fp16 on single Linear layers, and a digits sweep on CUDA.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from .common import Context, environment, finish_environment, fmt_x, interleaved_latency, log

TITLE = "GPU: 2:4 semi-structured sparsity, latency and memory"
MINILM_CONFIG = {"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                 "intermediate_size": 1536, "vocab_size": 30522, "max_position_embeddings": 512, "num_labels": 2,
                 "hidden_act": "gelu", "layer_norm_eps": 1e-12, "type_vocab_size": 2}


def _minilm_variants(cuda: torch.device) -> tuple[dict, dict]:
    import copy

    from gemini_core.config import CompressionConfig
    from gemini_core.runtimes.torch_kernels import CastInputs, build_execution_model
    from gemini_core.scenarios.hf_models import ENCODER_LAYER, HFClassifier
    from gemini_core.techniques.prune import nm_mask

    torch.manual_seed(0)
    model = HFClassifier.from_config_dict(MINILM_CONFIG).eval()
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear) and ENCODER_LAYER.search(name):
                module.weight.mul_(nm_mask(module.weight))  # 2:4 pattern on every encoder Linear
    variants, backends = {}, {}
    for key, config in (("fp32", CompressionConfig()), ("bf16", CompressionConfig(bits=16)),
                        ("fp16 2:4", CompressionConfig(prune_method="2:4", execution="sparse"))):
        built, backend, _ = build_execution_model(model, config, {}, cuda)
        variants[key], backends[key] = built, backend
    variants["fp16"] = CastInputs(copy.deepcopy(model), torch.float16).to(cuda)
    backends["fp16"] = "dense-fp16"
    return variants, backends


def _minilm_rows(ctx: Context, cuda: torch.device) -> list[dict]:
    from gemini_core.measure import measure_memory

    variants, backends = _minilm_variants(cuda)
    rows = []
    for batch, length in ctx.pick(((1, 64), (32, 64), (32, 128), (256, 128)), ((1, 64), (32, 128))):
        g = torch.Generator().manual_seed(0)
        inputs = {"input_ids": torch.randint(0, MINILM_CONFIG["vocab_size"], (batch, length), generator=g),
                  "attention_mask": torch.ones(batch, length, dtype=torch.long)}
        ok = {}
        for key, model in variants.items():
            try:
                with torch.no_grad():
                    model(**{k: v.to(cuda) for k, v in inputs.items()})
                ok[key] = model
            except Exception as exc:  # a kernel refusing a shape is a result, not a crash
                rows.append({"model": "MiniLM arch", "batch": f"{batch}x{length}", "variant": key,
                             "backend": backends[key], "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        timing = interleaved_latency(ok, inputs, "fp32", rounds=ctx.pick(10, 5), runs=ctx.pick(20, 10),
                                     device=cuda, warmup=3)
        for key in ok:
            mem = measure_memory(ok[key], inputs, cuda)
            rows.append({"model": "MiniLM arch", "batch": f"{batch}x{length}", "variant": key,
                         "backend": backends[key], "speedup": timing[key]["speedup"], "latency_ms": timing[key]["ms"],
                         "peak_memory_bytes": mem["peak_memory_bytes"],
                         "weight_memory_bytes": mem["weight_memory_bytes"]})
        log(f"gpu MiniLM {batch}x{length}: " + ", ".join(f"{k} {fmt_x(timing[k]['speedup'])}" for k in ok))
    return rows


def run(quick: bool = False, ctx: Context | None = None) -> dict:
    from .common import make_context

    ctx = ctx or make_context(quick=quick)
    started = time.perf_counter()
    if not torch.cuda.is_available():
        return {"section": "gpu", "title": TITLE, "mode": ctx.mode, "skipped": True,
                "reason": "no CUDA device on the machine that ran this", "env": finish_environment(
                    environment(ctx), started), "rows": [], "targets": [], "tables": []}
    cuda = torch.device("cuda")
    env = environment(ctx, cuda)
    result = {"section": "gpu", "title": TITLE, "mode": ctx.mode, "env": env, "skipped": False}
    try:
        from torch.sparse import SparseSemiStructuredTensor

        cslt = torch.backends.cusparselt
        env["semi_structured_backend"] = ("CUTLASS" if SparseSemiStructuredTensor._FORCE_CUTLASS
                                          else f"cuSPARSELt {cslt.version() if cslt.is_available() else '(absent)'}")
    except Exception as exc:  # private attributes: record what failed, measure anyway
        env["semi_structured_backend"] = f"unknown ({type(exc).__name__})"
    rows = _minilm_rows(ctx, cuda)
    from . import gpu_check

    two_four = []
    try:
        two_four = gpu_check.two_four_speedups()
    except Exception as exc:
        result["two_four_error"] = f"{type(exc).__name__}: {exc}"
    digits_rows = []
    if not ctx.tiny:
        try:
            digits_rows = gpu_check.digits_sweep()
        except Exception as exc:
            result["digits_error"] = f"{type(exc).__name__}: {exc}"
    result.update({"rows": rows, "two_four": two_four, "digits_sweep": digits_rows})
    semi = [r for r in rows if r.get("variant") == "fp16 2:4" and "speedup" in r]
    fp16 = {r["batch"]: r for r in rows if r.get("variant") == "fp16" and "speedup" in r}
    for r in semi:
        ref = fp16.get(r["batch"])
        if ref:
            r["speedup_vs_fp16"] = r["speedup"]["median"] / ref["speedup"]["median"]
    result["notes"] = [
        "MiniLM arch = BERT 6 layers, hidden 384, 12 heads, FFN 1536, random weights (the packaged pre-trained "
        "weights are not on the GPU machine; latency and memory do not depend on weight values).",
        "fp16 2:4: every encoder Linear given a 2:4 pattern and converted by build_execution_model "
        "(to_sparse_semi_structured); other layers dense fp16. speed-up vs the fp32 model per interleaved round "
        "(each round the median of several CUDA-synchronised runs).",
        "Linear rows and the digits sweep come from bench/gpu_check.py (sequential timing, 50 runs each).",
    ]
    result["targets"] = []
    result["tables"] = [
        {"title": "MiniLM architecture on the GPU",
         "columns": [("batch", "batch x tokens", "s"), ("variant", "variant", "s"), ("backend", "backend", "s"),
                     ("speedup", "speed-up vs fp32", "x"), ("speedup_vs_fp16", "2:4 vs fp16", ".2fx"),
                     ("latency_ms", "latency ms", "ms"), ("peak_memory_bytes", "peak memory (bytes)", ",d"),
                     ("error", "error", "s")],
         "rows": rows},
        {"title": "2:4 semi-structured vs dense fp16, single Linear (gpu_check.py)",
         "columns": [("shape", "tokens x in @ in x out", "s"), ("backend", "backend", "s"),
                     ("dense_fp16_ms_p50", "dense fp16 ms", ".3f"), ("sparse_2_4_ms_p50", "2:4 ms", ".3f"),
                     ("speedup_2_4_vs_fp16", "2:4 speed-up", ".2fx"),
                     ("peak_memory_dense_bytes", "peak mem dense", ",d"), ("peak_memory_2_4_bytes", "peak mem 2:4", ",d")],
         "rows": two_four},
        {"title": "Digits sweep on CUDA (gpu_check.py)",
         "columns": [("label", "point", "s"), ("status", "status", "s"), ("accuracy", "accuracy", ".4f"),
                     ("latency_ms_p50", "latency p50 ms", ".3f"), ("peak_memory_bytes", "peak memory", ",d"),
                     ("size_bytes", "file bytes", ",d"), ("backend", "backend", "s")],
         "rows": digits_rows},
    ]
    result["env"] = finish_environment(env, started)
    return result
