"""Converted runtimes as execution choices: each is a point of its own, measured like the others."""
import pytest

from gemini_core.compress import compress
from gemini_core.config import EXECUTIONS, CompressionConfig
from gemini_core.errors import ConfigError
from gemini_core.measure import measure_point
from gemini_core.runtimes.catalog import available_runtimes
from gemini_core.runtimes.converted import EXECUTION_RUNTIMES, RuntimeModule
from gemini_core.runtimes.cpu import cpu_record
from gemini_core.runtimes.torch_kernels import build_execution_model


def _needs(runtime: str) -> None:
    reason = available_runtimes().get(runtime)
    if reason:
        pytest.skip(f"{runtime}: {reason}")


def test_every_runtime_execution_is_declared_and_implemented():
    from gemini_core.runtimes.registry import EXECUTIONS as REGISTRY

    assert {"dense", "sparse", "auto", *EXECUTION_RUNTIMES} <= set(EXECUTIONS)
    assert all(REGISTRY[name].build is not None for name in EXECUTIONS)


@pytest.mark.parametrize("execution", ["onnxruntime", "openvino", "onnxruntime-int8", "openvino-int8"])
def test_a_runtime_point_is_measured_with_its_own_figures(digits, execution):
    _needs(EXECUTION_RUNTIMES[execution][0])
    scenario, baseline = digits
    dense = measure_point(compress(baseline.model, CompressionConfig(bits=8), scenario), scenario, batch_size=16)
    compressed = compress(baseline.model, CompressionConfig(bits=8, execution=execution), scenario)
    assert isinstance(compressed.model, RuntimeModule) and execution.split("-")[0] in compressed.backend
    record = measure_point(compressed, scenario, batch_size=16)
    assert record["runtime"]["runtime"] == EXECUTION_RUNTIMES[execution][0]
    assert record["size_bytes"] == dense["size_bytes"]  # storage is the config's; only the compute differs
    assert record["weight_memory_bytes"] == record["runtime"]["size_bytes"] > 0
    assert record["latency_ms_p50"] > 0 and record["latency_runs"] >= 20
    _assert_cpu_recorded(record)
    if execution.endswith("int8"):
        assert record["runtime"]["calibration"]["examples"] > 0  # static int8 saw training examples
        effect = record["runtime"]["calibration_effect"]
        assert effect["split"] == "validation" and effect["verdict"] and "accuracy_before" in effect
        assert abs(record["accuracy"] - dense["accuracy"]) <= 0.03
    else:  # float compute of the same stored weights: the same predictions
        assert abs(record["accuracy"] - dense["accuracy"]) <= 1 / len(scenario.splits.test) + 1e-9


def _assert_cpu_recorded(record: dict) -> None:
    """Which runtime wins depends on the CPU: its model and instruction-set flags go on every runtime point."""
    here = cpu_record()
    assert record["cpu"] == here["cpu"] and record["cpu"]
    assert set(here["cpu_flags"]) <= set(record["cpu_flags"])  # avx2 / avx512_vnni / amx_* as this CPU has them
    assert record["device"].startswith("cpu") and record["threads"] >= 1


def test_openvino_int4_keeps_4_bit_weights_in_the_runtime_file(digits):
    _needs("openvino")
    scenario, baseline = digits
    dense = measure_point(compress(baseline.model, CompressionConfig(bits=4, granularity="group-32"), scenario),
                          scenario, batch_size=16)
    compressed = compress(baseline.model, CompressionConfig(bits=4, granularity="group-32",
                                                            execution="openvino-int4"), scenario)
    record = measure_point(compressed, scenario, batch_size=16)
    fp32 = measure_point(compress(baseline.model, CompressionConfig(bits=4, granularity="group-32",
                                                                    execution="openvino"), scenario),
                         scenario, batch_size=16)
    runtime = record["runtime"]
    assert runtime["runtime"] == "openvino" and runtime["precision"] == "int4-weights"
    assert "INT4_ASYM group 32" in runtime["calibration"]["method"]
    # the IR's weights (.bin) are 4-bit: several times smaller than the fp32 IR of the same stored point
    assert runtime["ir_weights_bytes"] * 3 < fp32["runtime"]["ir_weights_bytes"]
    assert abs(record["accuracy"] - dense["accuracy"]) <= 0.03
    _assert_cpu_recorded(record)


def test_auto_records_every_candidate_and_keeps_one_within_tolerance(digits):
    scenario, baseline = digits
    record = measure_point(compress(baseline.model, CompressionConfig(execution="auto"), scenario), scenario,
                           batch_size=16)
    choice = record["auto_choice"]
    assert choice["reference"] == "torch dense" and "torch dense" in choice["candidates"]
    _assert_cpu_recorded(record)
    chosen = choice["candidates"][choice["chosen"]]
    assert chosen["within_tolerance"] and choice["decided_by"]
    if choice["chosen"] != "torch dense":  # a runtime is kept only ahead of torch in both timings
        assert chosen["beats_reference"] and choice["confirmation"]["confirmed"]
        assert choice["confirmation"]["speedup_interval"][0] > 1


def test_runtime_execution_without_the_scenario_is_one_clear_error(digits):
    scenario, baseline = digits
    with pytest.raises(ConfigError, match="scenario"):
        build_execution_model(baseline.model, CompressionConfig(execution="openvino"), {}, "cpu")


def test_a_runtime_point_exports_and_evaluate_converts_it_again(digits, tmp_path):
    _needs("onnxruntime")
    from gemini_core.checkpoint.load import load_export
    from gemini_core.kinds.classifier.export import export_compressed
    from gemini_core.workflows.export import evaluate_export

    scenario, baseline = digits
    compressed = compress(baseline.model, CompressionConfig(bits=8, execution="onnxruntime"), scenario)
    path = export_compressed(compressed, scenario, baseline, tmp_path / "ort", measure=False)
    assert "recorded on onnxruntime" in load_export(path).backend  # no scenario: torch dense, said so
    record = evaluate_export(path, device="cpu", scenario=scenario, batch_size=8)
    assert record["runtime"]["runtime"] == "onnxruntime" and record["accuracy_matches_record"]


def test_exports_that_keep_their_compression_and_run_standalone(digits, tmp_path):
    _needs("onnxruntime")
    _needs("openvino")
    import json

    from gemini_core.checkpoint.load import load_export
    from gemini_core.kinds.classifier.export import export_compressed

    scenario, baseline = digits
    compressed = compress(baseline.model, CompressionConfig(bits=8), scenario)
    path = export_compressed(compressed, scenario, baseline, tmp_path / "x", measure=False,
                             formats="onnx-compressed,openvino,standalone")
    recipe = json.loads((path / "recipe.json").read_text())
    assert recipe["onnx_compressed"]["size_ok"] and recipe["onnx_compressed"]["accuracy_ok"]
    # The tiny CNN's IR graph (xml) outweighs its 8-bit weights, so only accuracy is checked here; MiniLM's IR
    # is 1.01x its safetensors (docs/runtimes.md).
    assert recipe["openvino"]["accuracy_ok"] and recipe["openvino"]["size_bytes"] > 0
    assert (path / "onnx" / "model.int8.onnx").is_file() and (path / "openvino" / "model.xml").is_file()
    assert (path / "onnx" / "predict.py").is_file() and recipe["standalone"]["requires"][:2] == ["onnxruntime", "numpy"]
    assert "onnx/predict.py" in recipe["files"] and "OpenVINO IR" in (path / "README.md").read_text()
    load_export(path)  # every new file is under the checksums


def test_a_format_the_point_cannot_keep_is_refused_before_writing(digits, tmp_path):
    from gemini_core.errors import GeminiError
    from gemini_core.kinds.classifier.export import export_compressed

    scenario, baseline = digits
    compressed = compress(baseline.model, CompressionConfig(bits=32), scenario)
    with pytest.raises(GeminiError, match="onnx-compressed keeps 8-bit"):
        export_compressed(compressed, scenario, baseline, tmp_path / "y", measure=False, formats="onnx-compressed")
    with pytest.raises(GeminiError, match="standalone runs an ONNX file"):
        export_compressed(compressed, scenario, baseline, tmp_path / "y", measure=False, formats="standalone")
    assert not (tmp_path / "y").exists()


def test_auto_lets_sparse_kernels_compete_on_an_unstructured_point(digits):
    scenario, baseline = digits
    config = CompressionConfig(prune_method="magnitude-unstructured", prune_ratio=0.9, execution="auto")
    record = measure_point(compress(baseline.model, config, scenario), scenario, batch_size=16)
    assert "torch sparse" in record["auto_choice"]["candidates"]


def test_the_runtime_catalog_imports_first_without_a_circular_import():
    import subprocess
    import sys

    from tests.conftest import REPO

    # ``python -m bench.runtimes`` imports the catalog before anything else loaded ``compress``
    proc = subprocess.run([sys.executable, "-c", "import gemini_core.runtimes.catalog as c; print(sorted(c.runtime_names()))"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "torch" in proc.stdout and "openvino" in proc.stdout


def test_calibration_verdict_counts_examples_not_rounded_points():
    from gemini_core.runtimes.converted import calibration_verdict

    # 822 -> 823 of 836 right: one example, whose point difference lands a rounding error above 100 / 836
    assert calibration_verdict(822 / 836, 823 / 836, 836)["verdict"] == "no measurable change"
    assert calibration_verdict(823 / 836, 821 / 836, 836)["verdict"] == "calibration hurt accuracy"
    assert calibration_verdict(821 / 836, 823 / 836, 836)["verdict"] == "calibrated model scored higher"
