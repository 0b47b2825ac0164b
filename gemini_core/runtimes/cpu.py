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
