"""GPU check: runs the engine's CUDA paths and prints what it measured (python bench/gpu_check.py).

- a digits sweep on CUDA (structured, 2:4 sparse, bit widths): accuracy, GPU latency, GPU memory;
- 2:4 semi-structured vs dense fp16 Linear stacks at MiniLM's and larger shapes: measured speed-up.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import time

import torch

from gemini_core.config import CompressionConfig
from gemini_core.device import device_info
from gemini_core.measure import measure_latency, measure_memory
from gemini_core.runtimes.torch_kernels import build_execution_model
from gemini_core.techniques.prune import nm_mask


def digits_sweep() -> list[dict]:
    from gemini_core.kinds.classifier.spec import SweepSpec
    from gemini_core.results.store import Store
    from gemini_core.scenarios import get_scenario
    from gemini_core.training.baseline import get_baseline
    from gemini_core.workflows.sweep import run_sweep

    scenario = get_scenario("digits")
    t0 = time.perf_counter()
    baseline = get_baseline(scenario, device="cuda")
    train_s = time.perf_counter() - t0
    spec = SweepSpec(prune_methods=("l1-structured", "2:4"), prune_ratios=(0.0, 0.5), bits=(32, 16, 8, 4),
                     executions=("dense", "sparse"), finetune_steps=(60,), batch_size=256)
    rows = []
    for r in run_sweep(scenario, spec, store=Store(), device="cuda", baseline=baseline):
        rows.append({k: r.get(k) for k in ("label", "status", "error", "accuracy", "latency_ms_p50", "latency_ms_p90",
                                            "peak_memory_bytes", "size_bytes", "backend")})
    print(json.dumps({"digits_baseline_train_seconds": train_s, "baseline_accuracy": baseline.test_accuracy}))
    return rows


def two_four_speedups() -> list[dict]:
    out = []
    cuda = torch.device("cuda")
    for in_f, out_f, tokens in [(384, 1536, 32 * 128), (1536, 384, 32 * 128), (4096, 4096, 8192),
                                (8192, 8192, 8192), (4096, 16384, 4096)]:
        linear = torch.nn.Linear(in_f, out_f)
        with torch.no_grad():
            linear.weight.mul_(nm_mask(linear.weight))

        class One(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = linear

            def forward(self, x):
                return self.fc(x)

        model = One().eval()
        dense, _, _ = build_execution_model(model, CompressionConfig(bits=16), {}, cuda)  # bf16 dense
        dense16 = copy.deepcopy(model).half().to(cuda)
        sparse, backend, _ = build_execution_model(model, CompressionConfig(prune_method="2:4", execution="sparse"),
                                                   {}, cuda)
        x = {"x": torch.randn(tokens, in_f, device=cuda)}
        d = measure_latency(_Half(dense16), x, cuda, min_runs=50, min_seconds=0.3)
        s = measure_latency(sparse, x, cuda, min_runs=50, min_seconds=0.3)
        b = measure_latency(dense, x, cuda, min_runs=50, min_seconds=0.3)
        mem_d = measure_memory(_Half(dense16), x, cuda)["peak_memory_bytes"]
        mem_s = measure_memory(sparse, x, cuda)["peak_memory_bytes"]
        out.append({"shape": f"{tokens}x{in_f} @ {in_f}x{out_f}", "backend": backend,
                    "dense_fp16_ms_p50": d["latency_ms_p50"], "dense_bf16_ms_p50": b["latency_ms_p50"],
                    "sparse_2_4_ms_p50": s["latency_ms_p50"],
                    "speedup_2_4_vs_fp16": d["latency_ms_p50"] / s["latency_ms_p50"],
                    "peak_memory_dense_bytes": mem_d, "peak_memory_2_4_bytes": mem_s})
    return out


class _Half(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.half()).float()


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 1
    print(json.dumps(device_info("cuda")))
    result = {"device": device_info("cuda"), "two_four": two_four_speedups(), "digits": digits_sweep()}
    for row in result["two_four"]:
        print(json.dumps(row))
    for row in result["digits"]:
        print(json.dumps(row))
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "gpu_check.json"), "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
