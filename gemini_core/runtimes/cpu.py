"""The CPU a figure was measured on: model name and the instruction sets that decide which kernels are fast.

Which runtime wins depends on these flags (measured: OpenVINO int8 lost to its own fp32 on an AVX2-only
EPYC, while AMX made bf16 2.45x faster on a Xeon), so every runtime point records them.
"""
from __future__ import annotations

import platform
from functools import lru_cache

CPUINFO = "/proc/cpuinfo"
# Extensions that change which int8 / bf16 kernels a runtime can use, in the order they are reported.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def _read_cpuinfo(path: str = CPUINFO) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:  # not Linux, or /proc hidden: the record says "unknown" rather than failing
        return ""


def _first_field(text: str, key: str) -> str | None:
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return value.strip()
    return None


def parse_cpuinfo(text: str) -> dict:
    """{"cpu": model name, "cpu_flags": the ISA_FLAGS present, "isa": flag -> bool} from cpuinfo text."""
    flags = set((_first_field(text, "flags") or "").split())
    present = [flag for flag in ISA_FLAGS if flag in flags]
    model = _first_field(text, "model name") or platform.processor() or platform.machine() or "unknown"
    return {"cpu": model, "cpu_flags": present, "isa": {flag: flag in flags for flag in ISA_FLAGS}}


@lru_cache(maxsize=1)
def cpu_record() -> dict:
    """This machine's CPU model and instruction-set flags (read once per process)."""
    record = parse_cpuinfo(_read_cpuinfo())
    # int8 pays on CPUs with int8 dot-product instructions (VNNI) or AMX; bf16 on AVX512-BF16 or AMX.
    record["int8_dot_product"] = bool(record["isa"]["avx512_vnni"] or record["isa"]["avx_vnni"]
                                      or record["isa"]["amx_int8"])
    record["bf16_native"] = bool(record["isa"]["avx512_bf16"] or record["isa"]["amx_bf16"])
    return record


# Environment variables that cap the instruction set each library dispatches to, and who reads them. They are
# read when each library loads, so they must be set before the process imports it (``bench.runtimes --isa``
# starts itself again with them). What each library reports in force is recorded beside them.
ISA_CAP_VARIABLES = {
    "ATEN_CPU_CAPABILITY": "torch's vectorized ATen kernels (read at import; torch.backends.cpu.get_cpu_capability)",
    "ONEDNN_MAX_CPU_ISA": "oneDNN: torch's mkldnn primitives and the oneDNN inside OpenVINO's CPU plugin",
    "MKL_ENABLE_INSTRUCTIONS": "MKL: torch's fp32 GEMM",
    "OV_CPU_MAX_ISA": "OpenVINO's own CPU kernels (the 2026.4 wheel reads it: BF16 leaves its capabilities)",
    "FBGEMM_ENABLE_INSTRUCTIONS": "FBGEMM: torch's dynamic int8 Linear (dense-int8, torch int8); it dispatches on "
                                  "CPUID unless this names a lower level (a 384x1536 int8 Linear at 2,048 tokens "
                                  "ran 2x slower with AVX2 here, same outputs)",
}
ISA_CAPS = {  # --isa NAME -> value per variable (each library spells the level its own way)
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "OV_CPU_MAX_ISA": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"},
}


def isa_cap_environment(name: str) -> dict[str, str]:
    """The variables that restrict every library that honours one to ``name`` (e.g. "avx2")."""
    if name not in ISA_CAPS:
        raise ValueError(f"unknown instruction-set cap {name!r}; choose one of {', '.join(ISA_CAPS)}")
    return dict(ISA_CAPS[name])


def isa_restriction() -> dict:
    """The caps set for this process and what each library says is in force, so a figure says which ISA ran.

    torch reports its ATen capability; OpenVINO reports its optimisation capabilities (BF16 still listed under an
    AVX2 cap means its own kernels were not capped); ONNX Runtime has no run-time cap at all (MLAS picks kernels
    from CPUID), so its rows keep the machine's native ISA. Torch's dynamic int8 Linear (FBGEMM) reads
    ``FBGEMM_ENABLE_INSTRUCTIONS`` and reports nothing; ``fbgemm_capped`` is the level set for it.
    """
    import os

    import torch

    env = {name: os.environ[name] for name in ISA_CAP_VARIABLES if os.environ.get(name)}
    report: dict = {"variables": env, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        import openvino as ov  # optional dependency

        report["openvino_optimization_capabilities"] = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as exc:  # not installed, or no CPU plugin: said, not fatal
        report["openvino_optimization_capabilities"] = f"unavailable ({type(exc).__name__})"
    report["onnxruntime"] = "no run-time ISA cap: MLAS dispatches on CPUID (native ISA)"
    capped_torch = env.get("ATEN_CPU_CAPABILITY", "").lower() == "avx2" and report["torch_cpu_capability"] == "AVX2"
    report["torch_restricted_to_avx2"] = capped_torch
    report["onednn_capped"] = env.get("ONEDNN_MAX_CPU_ISA")
    report["fbgemm_capped"] = env.get("FBGEMM_ENABLE_INSTRUCTIONS")
    return report


def onednn_int8_dot_product() -> bool:
    """Whether oneDNN (OpenVINO's int8 kernels) may use VNNI/AMX here: the CPU has them and no cap below them is set."""
    import os

    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    capped_below = cap in ("SSE41", "AVX", "AVX2", "AVX512_CORE")  # levels without VNNI or AMX
    return bool(cpu_record()["int8_dot_product"]) and not capped_below
