"""Calibration and the auto choice on the pages: the selected point's record panel (Sweep) and the Export page
render a runtime point's calibration (a calibration that hurt is a warning) and every candidate auto timed."""
from __future__ import annotations

try:
    from tests.app.test_app_support import app_env, new_app  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, new_app  # noqa: F401

from gemini_core.paths import store_path
from gemini_core.results.runtime_info import auto_choice_reason, calibration_summary
from gemini_core.results.store import Store
from tests.fixed_run import RUN_ID, write_fixed_run

CPU = {"cpu": "Test CPU 9000", "cpu_flags": ["avx2", "avx512f", "avx512_vnni"]}
# Test fixtures, not measurements: a calibrated int8 point whose calibration cost 2 validation points, and an
# auto point that kept OpenVINO int8 over a faster candidate that lost accuracy.
CALIBRATED = {
    "runtime": {"runtime": "openvino", "precision": "int8", "size_bytes": 23_479_224, "threads": 2,
                "inference_precision": "f32",
                "calibration": {"method": "nncf.quantize, MIXED preset", "examples": 256, "batches": 8},
                "calibration_effect": {"split": "validation", "examples": 300, "accuracy_before": 0.97,
                                       "accuracy_after": 0.95, "delta_points": -2.0,
                                       "verdict": "calibration hurt accuracy"}}}
AUTO = {
    "runtime": {"runtime": "openvino", "precision": "int8", "size_bytes": 23_000_000, "threads": 2,
                "calibration": {"method": "nncf.quantize", "examples": 256, "batches": 8},
                "calibration_effect": {"split": "validation", "examples": 300, "accuracy_before": 0.97,
                                       "accuracy_after": 0.97, "delta_points": 0.0,
                                       "verdict": "no measurable change"}},
    "auto_choice": {"chosen": "openvino-int8", "reference": "torch dense", "tolerance_points": 1.0,
                    "method": "interleaved, 5 rounds after 2 warm-up calls each",
                    "candidates": {
                        "torch dense": {"accuracy": 0.97, "accuracy_delta_pts": 0.0, "within_tolerance": True,
                                        "latency_ms_p50": 120.0, "latency_ms_p10": 110.0, "latency_ms_p90": 130.0,
                                        "speedup_vs_reference": 1.0},
                        "openvino-int8": {"accuracy": 0.97, "accuracy_delta_pts": 0.0, "within_tolerance": True,
                                          "latency_ms_p50": 15.0, "latency_ms_p10": 14.0, "latency_ms_p90": 16.0,
                                          "speedup_vs_reference": 8.0},
                        "onnxruntime-int8": {"accuracy": 0.94, "accuracy_delta_pts": -3.0, "within_tolerance": False,
                                             "latency_ms_p50": 12.0, "latency_ms_p10": 11.0, "latency_ms_p90": 13.0,
                                             "speedup_vs_reference": 10.0},
                        "openvino-bf16": {"error": "ConfigError: this CPU has no bf16 support",
                                          "within_tolerance": False}}}}


def _runtime_points() -> dict[str, int]:
    store = Store(store_path())
    ids = write_fixed_run(store)
    base = store.get_point(ids["8-bit"])
    for label, extra, execution in (("ov int8", CALIBRATED, "openvino-int8"), ("auto", AUTO, "auto")):
        record = {k: v for k, v in base.items() if k not in ("point_id", "run_id", "point_key", "baseline_key")}
        record.update(extra, **CPU, label=label, config={**base["config"], "execution": execution})
        ids[label] = store.add_point(RUN_ID, "fixed-baseline", label, record)
    return ids


def _texts(at) -> str:
    return " ".join([c.value for c in at.caption] + [m.value for m in at.markdown])


def test_engine_rows_say_what_the_pages_show():
    calibration = calibration_summary(CALIBRATED)
    assert calibration["hurt"] and calibration["delta_points"] == -2.0 and calibration["calibration_examples"] == 256
    assert calibration_summary({"runtime": {"calibration": {"method": "none", "examples": 0}}}) is None
    reason = auto_choice_reason(AUTO)
    assert reason.startswith("auto kept openvino-int8: the fastest of 4 candidates (p50 15.000 ms, 8.00x torch dense)")
    assert "onnxruntime-int8 was faster but lost 3.00 points" in reason and "openvino-bf16 failed" in reason


def test_record_panel_shows_calibration_warning_and_auto_candidates(app_env):
    ids = _runtime_points()
    at = new_app("pages/2_Sweep.py")
    at.session_state["selected_point_id"] = ids["ov int8"]
    at.run()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("Calibration hurt accuracy") and "97.00% → 95.00% (-2.00 pts)" in w for w in warnings)
    assert "256 training examples" in " ".join(warnings) and "Test CPU 9000" in _texts(at)
    assert "avx512_vnni" in _texts(at)

    at.session_state["selected_point_id"] = ids["auto"]
    at.run()
    assert not any(w.value.startswith("Calibration hurt") for w in at.warning)  # this one did not hurt
    assert "no measurable change" in _texts(at)
    table = [d.value for d in at.dataframe if "candidate" in d.value.columns][0]
    assert list(table["candidate"]) == ["onnxruntime-int8", "openvino-int8 (kept)", "torch dense", "openvino-bf16"]
    assert list(table["within tolerance"])[0] == "no" and "bf16" in list(table["within tolerance"])[-1]
    assert "auto kept openvino-int8" in _texts(at)


def test_export_page_shows_the_points_calibration_and_auto_choice(app_env):
    ids = _runtime_points()
    at = new_app()
    at.session_state["selected_point_id"] = ids["auto"]
    at.switch_page("pages/4_Export.py").run()
    assert not at.exception, at.exception
    assert "Runs on **openvino int8**" in _texts(at) and "auto kept openvino-int8" in _texts(at)
    assert any("candidate" in d.value.columns for d in at.dataframe)
    at.session_state["selected_point_id"] = ids["ov int8"]
    at.run()
    assert any(w.value.startswith("Calibration hurt accuracy") for w in at.warning)
