"""Runtime registry, RuntimeModel call styles, CPU flags and the auto choice (no optional packages needed)."""
from __future__ import annotations

import time

import pytest
import torch

from gemini_core.errors import ConfigError
from gemini_core.measure import classification_metrics, measure_latency
from gemini_core.runtimes.auto import choose_fastest, interleaved_timings
from gemini_core.runtimes.catalog import available_runtimes, build, runtime_names
from gemini_core.runtimes.cpu import cpu_record, parse_cpuinfo

from .runtime_models import logits, mlp_inputs, mlp_model

CPUINFO_SAMPLE = """processor\t: 0
model name\t: Test CPU 9000
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile
"""


def test_registry_lists_runtimes_and_reasons():
    assert {"torch", "onnxruntime", "openvino"} <= set(runtime_names())
    reasons = available_runtimes()
    assert reasons["torch"] is None
    assert all(reason is None or isinstance(reason, str) and reason for reason in reasons.values())


def test_unknown_runtime_and_precision_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'"):
        build("tensorrt", mlp_model(), mlp_inputs(2))
    with pytest.raises(ConfigError, match="no precision 'int3'"):
        build("torch", mlp_model(), mlp_inputs(2), precision="int3")


def test_parse_cpuinfo_reports_model_and_isa_flags():
    record = parse_cpuinfo(CPUINFO_SAMPLE)
    assert record["cpu"] == "Test CPU 9000"
    assert record["cpu_flags"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile"]
    assert record["isa"]["avx512_vnni"] and not record["isa"]["amx_bf16"]
    here = cpu_record()
    assert here["cpu"] and isinstance(here["cpu_flags"], list)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_torch_runtime_runs_in_the_measurement_code(precision):
    model, inputs = mlp_model(), mlp_inputs(16)
    built = build("torch", model, inputs, precision=precision, threads=1)
    assert torch.equal(built(inputs), built(**inputs))  # both call styles
    tolerance = {"fp32": 1e-6, "bf16": 5e-2, "int8": 5e-2}[precision]
    assert (built(inputs) - logits(model, inputs)).abs().max() <= tolerance
    latency = measure_latency(built, inputs, "cpu", min_runs=3, min_seconds=0.0, warmup=1)
    assert latency["latency_ms_p50"] > 0
    from gemini_core.scenarios.base import Split

    split = Split(mlp_inputs(40, seed=1), logits(model, mlp_inputs(40, seed=1)).argmax(-1))
    assert classification_metrics(built, split, "cpu")["accuracy"] >= (1.0 if precision == "fp32" else 0.9)
    weights = 30 * 128 + 128 * 128 + 128 * 2
    assert built.size_bytes >= weights * {"fp32": 4, "bf16": 2, "int8": 1}[precision]
    assert built.size_bytes < weights * {"fp32": 4, "bf16": 2, "int8": 1}[precision] * 1.2
    assert built.record()["calibration"]["method"] == "none"


def _sleeper(ms: float, fail: bool = False):
    def model(**_inputs):
        if fail:
            raise RuntimeError("kernel missing on this CPU")
        time.sleep(ms / 1e3)
        return torch.zeros(1, 2)
    return model


def test_choose_fastest_keeps_the_fastest_within_tolerance():
    candidates = {"reference": _sleeper(12), "fast-but-wrong": _sleeper(1), "fast-enough": _sleeper(4),
                  "broken": _sleeper(1, fail=True)}
    accuracy = {"reference": 0.90, "fast-but-wrong": 0.80, "fast-enough": 0.895}
    by_model = {id(m): accuracy.get(n) for n, m in candidates.items()}

    def accuracy_fn(model):
        model()  # the broken one raises here, as a real failing runtime would
        return by_model[id(model)]

    result = choose_fastest(candidates, {}, accuracy_fn, tolerance_points=1.0, rounds=5, warmup=1)
    assert result["chosen"] == "fast-enough"
    rows = result["candidates"]
    assert not rows["fast-but-wrong"]["within_tolerance"] and rows["fast-but-wrong"]["accuracy_delta_pts"] == pytest.approx(-10)
    assert "kernel missing" in rows["broken"]["error"]
    assert rows["fast-but-wrong"]["latency_ms_p50"] < rows["fast-enough"]["latency_ms_p50"] < rows["reference"]["latency_ms_p50"]
    for name in ("reference", "fast-but-wrong", "fast-enough"):  # every timing is kept, losers too
        assert rows[name]["runs"] == 5 and rows[name]["latency_ms_p10"] <= rows[name]["latency_ms_p90"]


def test_choose_fastest_refuses_a_missing_reference():
    with pytest.raises(ConfigError, match="reference 'nope'"):
        choose_fastest({"a": _sleeper(1)}, {}, lambda m: 1.0, 1.0, reference="nope")
    with pytest.raises(ConfigError, match="rounds 0"):
        interleaved_timings({"a": _sleeper(1)}, {}, rounds=0)
    with pytest.raises(ConfigError, match="rounds 3 must be at least 5"):  # no interval from 3 paired rounds
        choose_fastest({"a": _sleeper(1)}, {}, lambda m: 1.0, 1.0, rounds=3)
