"""LLM points on real runtimes inside the product: a sweep's OpenVINO point is measured by the runtime
(its own perplexity, greedy decode against the bandwidth limit), carries the point's weight grid, and its
export ships the IR that `evaluate` reloads in OpenVINO. Tiny random Llama (conftest)."""
from __future__ import annotations

import json
import sqlite3

import pytest

from gemini_core.errors import ConfigError
from gemini_core.kinds.llm.export import evaluate_llm_export, export_llm_point
from gemini_core.kinds.llm.point import EXECUTIONS, LLMSettings, measure_llm_point
from gemini_core.kinds.llm.sweep import LLMSweepSpec
from gemini_core.results.store import Store
from gemini_core.scenarios import get_scenario
from gemini_core.workflows.sweep import run_sweep

pytest.importorskip("openvino")

TINY = LLMSettings(context_len=64, eval_tokens=256, calib_samples=4, calib_seq_len=64, prefill_tokens=16,
                   prefill_repeats=2, decode_new_tokens=4, decode_repeats=1)


@pytest.fixture(scope="module")
def swept(tiny_llm_dir, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("llm_rt_store") / "runs.sqlite")
    spec = LLMSweepSpec(quant_methods=("rtn",), bits=(8,), group_sizes=(32,), executions=("torch", "openvino"),
                        settings=TINY)
    records = list(run_sweep(get_scenario("llm", model=f"hf:{tiny_llm_dir}"), spec, store=store))
    return store, records


def test_the_runtimes_are_executions_of_the_product():
    assert {"torch", "openvino", "onnxruntime-genai", "auto"} <= set(EXECUTIONS)


def test_an_openvino_point_is_measured_by_its_runtime_with_the_points_grid(swept):
    _, records = swept
    by = {(r["config"]["quant_method"], r["config"]["execution"]): r for r in records}
    torch_q, ov_q = by[("rtn", "torch")], by[("rtn", "openvino")]
    assert ov_q["execution"] == "openvino" and ov_q["weight_bits"] == 8      # the grid went to the runtime
    assert ov_q["perplexity"] == pytest.approx(torch_q["perplexity"], rel=0.02)  # same weights, f16 scales
    assert 0 < ov_q["fraction_of_bandwidth_limit"] and ov_q["decode_tokens_per_s"] > 0
    assert ov_q["latency_ms_p10"] <= ov_q["latency_ms_p50"] <= ov_q["latency_ms_p90"]
    assert {"cpu", "cpu_flags"} <= set(ov_q)


def test_an_openvino_points_export_ships_the_ir_and_evaluate_reloads_it(swept, tmp_path):
    store, records = swept
    point = next(r for r in records if r["config"]["execution"] == "openvino" and r["config"]["quant_method"] == "rtn")
    out = export_llm_point(store, point["point_id"], tmp_path / "export", gguf=None)
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["llm"]["openvino_dir"] == "openvino" and (out / "openvino" / "openvino_model.xml").is_file()
    again = evaluate_llm_export(out)
    assert again["perplexity_matches_record"]
    assert again["openvino_ir"]["perplexity"] == pytest.approx(point["perplexity"], rel=1e-3)
    # a quantized point also ships compressed-tensors pack-quantized weights that transformers reloads
    assert recipe["llm"]["compressed_dir"] == "compressed" and (out / "compressed" / "config.json").is_file()
    assert "quantization_config" in json.loads((out / "compressed" / "config.json").read_text())
    assert again["compressed_tensors"]["relative_diff"] < 1e-3   # scales stored by the library (SmolLM2: 1.8e-7)


def test_a_stride_is_refused_on_a_runtime(tiny_llm_dir):
    scenario = get_scenario("llm", model=f"hf:{tiny_llm_dir}")
    lm = scenario.load()
    with pytest.raises(ConfigError, match="stride"):
        measure_llm_point(lm.model, lm.tokenizer, scenario.text_split, "openvino",
                          LLMSettings(**{**TINY.to_dict(), "stride": 32}))


def test_an_llm_run_is_retimed_interleaved_on_the_executions_it_ran(swept, monkeypatch, capsys, tmp_path):
    """`retime` rebuilds each point, times it where it ran (torch or OpenVINO) in rotated rounds, keeps the
    earlier figures and leaves perplexity alone; the CLI hands LLM runs to it."""
    from gemini_core.cli import main
    from gemini_core.kinds.llm.runtimes import run as runtime_run
    from gemini_core.workflows.retime import retime_run

    store, records = swept
    run_id = records[0]["run_id"]
    loaded = []
    real_load = runtime_run.LOADERS["openvino_llm"]
    monkeypatch.setitem(runtime_run.LOADERS, "openvino_llm",
                        lambda *a, **k: loaded.append(1) or real_load(*a, **k))
    retimed = retime_run(store, run_id, rounds=2)  # the one entry: it hands LLM runs to llm_retime
    on_openvino = sum(r["execution"] == "openvino" for r in records)
    assert len(retimed) == len(records) and len(loaded) == on_openvino >= 1  # only OpenVINO points load it
    by_id = lambda rows: sorted(rows, key=lambda r: r["point_id"])  # noqa: E731
    for before, after in zip(by_id(records), by_id(retimed)):
        assert after["perplexity"] == before["perplexity"] and after["execution"] == before["execution"]
        assert len(after["decode_tokens_per_s_runs"]) == 2 and after["retime_rounds"] == 2
        assert after["latency_runs"] == 2 * TINY.prefill_repeats
        assert after["prefill_ms_p10"] <= after["prefill_ms_p50"] <= after["prefill_ms_p90"]
        assert after["previous_latency"]["decode_tokens_per_s"] == before["decode_tokens_per_s"]
    stored = {p["point_id"]: p for p in store.points(run_id)}
    assert all(stored[r["point_id"]]["retimed_at"] == r["retimed_at"] for r in retimed)
    home = tmp_path / "home"  # the CLI reads the store of GEMINI_HOME: a consistent copy of this one
    home.mkdir()
    with sqlite3.connect(store.path) as src, sqlite3.connect(home / "gemini.sqlite") as dst:
        src.backup(dst)
    monkeypatch.setenv("GEMINI_HOME", str(home))
    capsys.readouterr()
    assert main(["retime", run_id, "--rounds", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == len(records) and all(r["retime_rounds"] == 1 for r in lines)
