"""LLM sweeps on Ray: one task per point, the same perplexities as a local sweep, stored as they finish and
keyed apart from local points; a point whose task fails is stored with its reason. A tiny random Llama."""
from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("ray_test_session")

from gemini_core.cli import main  # noqa: E402
from gemini_core.kinds.llm.point import LLMPointConfig, LLMSettings  # noqa: E402
from gemini_core.kinds.llm.ray import run_llm_points  # noqa: E402
from gemini_core.kinds.llm.sweep import LLMSweepSpec, llm_point_record  # noqa: E402
from gemini_core.results.store import Store  # noqa: E402
from gemini_core.scenarios import get_scenario  # noqa: E402
from gemini_core.workflows import ray_executor  # noqa: E402
from gemini_core.workflows.sweep import run_sweep  # noqa: E402

try:
    from tests.app.test_app_support import app_env, new_app, wait_job  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, new_app, wait_job  # noqa: F401

TINY = LLMSettings(context_len=64, eval_tokens=256, calib_samples=4, calib_seq_len=64, prefill_tokens=16,
                   prefill_repeats=2, decode_new_tokens=3, decode_repeats=1)




def test_an_llm_sweep_on_ray_gives_the_local_perplexities_and_a_failed_task_keeps_its_reason(tiny_llm_dir,
                                                                                             tmp_path):
    spec = LLMSweepSpec(quant_methods=("rtn",), bits=(8,), group_sizes=(32,), prune_methods=("magnitude",),
                        sparsities=(0.5,), settings=TINY)
    store = Store(tmp_path / "runs.sqlite")
    local = list(run_sweep(get_scenario("llm", model=f"hf:{tiny_llm_dir}"), spec, store=store))
    executor = ray_executor.RayExecutor(None)
    on_ray = list(run_sweep(get_scenario("llm", model=f"hf:{tiny_llm_dir}"), spec, store=store,
                                executor=executor))
    assert len(on_ray) == len(local) == 3 and all(r["status"] == "ok" for r in on_ray), on_ray
    assert not any(r.get("reused") for r in on_ray)  # local points are not Ray points (other CPU share)
    by_label = {r["label"]: r for r in local}
    for record in on_ray:
        assert record["executor"] == "ray" and record["ray_node"]
        assert record["perplexity"] == by_label[record["label"]]["perplexity"]  # the same compressed model
        assert record["point_key"] != by_label[record["label"]]["point_key"]
    assert store.get_run(on_ray[0]["run_id"])["status"] == "finished"
    again = list(run_sweep(get_scenario("llm", model=f"hf:{tiny_llm_dir}"), spec, store=store,
                               executor=executor))
    assert all(r["reused"] for r in again)  # a second Ray sweep re-uses the Ray points

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full on the worker")

    scenario = get_scenario("llm", model=f"hf:{tiny_llm_dir}")
    results = list(run_llm_points(executor, broken, {"model": f"hf:{tiny_llm_dir}"}, scenario.baseline_key(),
                                  [LLMPointConfig(quant_method="rtn", bits=8)], TINY))
    (config, record), = results
    assert record["status"] == "failed" and "disk full on the worker" in record["error"]
    results = list(run_llm_points(executor, llm_point_record, {"model": f"hf:{tiny_llm_dir}"}, "llm-not-this-one",
                                  [LLMPointConfig()], TINY))
    assert results[0][1]["status"] == "failed" and "differs from the driver's" in results[0][1]["error"]


def test_the_cli_refuses_a_ray_address_without_the_ray_executor(capsys):
    assert main(["sweep", "--scenario", "llm", "--ray-address", "auto", "--quant", "rtn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ray-address needs --executor ray" in err[0]


def test_the_sweep_page_runs_an_llm_grid_on_ray(tiny_llm_dir, app_env):
    at = new_app()
    at.session_state["model"] = {"scenario": "llm", "options": {"model": f"hf:{tiny_llm_dir}"}, "train": None,
                                 "adaptive": None}
    at.switch_page("pages/2_Sweep.py").run()
    at.multiselect(key="llm_quant").set_value(["rtn"]).run()
    at.multiselect(key="llm_bits").set_value([8]).run()
    at.multiselect(key="llm_groups").set_value([32]).run()
    at.radio(key="sw_executor").set_value("ray").run()
    assert not at.exception, at.exception
    at.button(key="sw_start").click().run()
    job = wait_job(at, "sweep", timeout=240)
    assert job.state == "done", job.snapshot()
    assert len(job.records) == 2 and {r["executor"] for r in job.records} == {"ray"}
    assert all(r["status"] == "ok" and r["perplexity"] > 1 for r in job.records)
