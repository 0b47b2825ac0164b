"""The Ray executor: same points as local, streamed back; a node that dies mid-sweep loses no point.

Ray start-up is slow on 2 cores (a local instance ~10 s, a two-node loopback cluster ~20 s), so
the module keeps to two tests on small digits grids.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("ray_test_session")

from gemini_core import cli  # noqa: E402
from gemini_core.config import CompressionConfig  # noqa: E402
from gemini_core.errors import ConfigError  # noqa: E402
from gemini_core.kinds.classifier.spec import SweepSpec  # noqa: E402
from gemini_core.results.store import Store  # noqa: E402
from gemini_core.workflows import ray_executor  # noqa: E402
from gemini_core.workflows.executors import make_executor
from gemini_core.workflows.sweep import run_sweep
from tests.engine.conftest import RAY_ENV  # noqa: E402

try:
    from tests.app.test_app_support import app_env, chart_by_title, new_app, point_count, wait_job  # noqa: F401
except ImportError:  # pragma: no cover
    from test_app_support import app_env, chart_by_title, new_app, point_count, wait_job  # noqa: F401

FAST = {"min_runs": 3, "min_seconds": 0.0}
SWEEP_PAGE = "pages/2_Sweep.py"




def _by_config(records):
    return {CompressionConfig.from_dict(r["config"]).key(): r for r in records}


def test_ray_sweep_gives_the_local_points_and_accuracies_and_resumes(digits, tmp_path):
    scenario, baseline = digits
    spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.0, 0.5), bits=(32, 4),
                     executions=("dense", "sparse"), finetune_steps=(20,), batch_size=8)
    # The local instance has os.cpu_count() CPUs shared by the units: each task measures on its share.
    threads = max(1, (os.cpu_count() or 1) // 2)
    # Recovery runs at the training settings' fixed thread count, so the driver's own thread count does
    # not matter: run the local sweep at another one than the workers' on purpose.
    before = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        local = list(run_sweep(scenario, spec, store=Store(tmp_path / "local.sqlite"), device="cpu",
                               latency_kwargs=FAST, baseline=baseline))
    finally:
        torch.set_num_threads(before)
    store = Store(tmp_path / "ray.sqlite")
    remote = list(run_sweep(scenario, spec, store=store, device="cpu", executor="ray",
                            latency_kwargs=FAST, baseline=baseline))

    assert len(local) == len(remote) == spec.n_points() == 9  # 8 grid points + the control
    local_by, remote_by = _by_config(local), _by_config(remote)
    assert set(local_by) == set(remote_by)  # the same set of points
    for key, rec in remote_by.items():
        assert rec["status"] == "ok", rec.get("error")
        assert rec["executor"] == "ray" and rec["ray_node"]
        # Pruning and fine-tuning are seeded: the worker (1 thread) reaches the same accuracy as the driver.
        assert rec["accuracy"] == pytest.approx(local_by[key]["accuracy"], abs=1e-6), rec["label"]
        assert rec["test_correct"] == local_by[key]["test_correct"], rec["label"]  # example by example
        assert rec["size_bytes"] == local_by[key]["size_bytes"]
        assert rec["threads"] == threads  # the task's CPU share, and torch told so (1 each on 2 cores)
        assert rec["host"] == socket.gethostname()
    run_id = remote[0]["run_id"]
    assert run_id != local[0]["run_id"]  # Ray points are keyed apart from local ones
    assert len(store.points(run_id)) == 9 and store.runs()[0]["status"] == "finished"

    # A re-run resumes like a local one: everything is found in the store, nothing is sent to Ray.
    again = list(run_sweep(scenario, spec, store=store, device="cpu", executor="ray",
                           latency_kwargs=FAST, baseline=baseline))
    assert len(again) == 9 and all(r["reused"] for r in again)
    assert len(store.points(run_id)) == 9


def test_a_failing_point_is_stored_with_its_reason_and_the_sweep_goes_on(digits, tmp_path):
    scenario, baseline = digits
    store = Store(tmp_path / "runs.sqlite")
    spec = SweepSpec(bits=(32, 8), batch_size=8)
    # A latency setting the worker cannot use makes every measurement fail there, not the sweep.
    records = list(run_sweep(scenario, spec, store=store, executor="ray",
                             latency_kwargs={"min_runs": "three"}, baseline=baseline))
    assert len(records) == 2 and all(r["status"] == "failed" for r in records)
    assert all("TypeError" in r["error"] for r in records)
    stored = store.points(records[0]["run_id"])
    assert [p["status"] for p in stored] == ["failed", "failed"] and all(p["error"] for p in stored)
    assert store.runs()[0]["status"] == "finished"


def test_sweep_page_runs_on_ray_and_shows_the_cluster():
    at = new_app(SWEEP_PAGE)
    for key, value in {"sw_methods": ["l1-structured"], "sw_ratios": [0.0, 0.5], "sw_bits": [32, 8],
                       "sw_exec": ["dense"], "sw_ft": [20]}.items():
        at.multiselect(key=key).set_value(value)
    at.radio(key="sw_executor").set_value("ray").run()
    assert not at.exception, at.exception
    at.button(key="sw_cluster_btn").click().run()
    assert not at.exception, at.exception
    shown = " ".join(c.value for c in at.caption)
    assert f"1 node(s), {os.cpu_count()} CPUs, 0 GPUs" in shown, shown  # this machine's local instance
    at.button(key="sw_start").click().run()
    job = wait_job(at, "sweep", timeout=240)
    assert job.state == "done", job.snapshot()
    assert len(job.records) == 5 and {r["executor"] for r in job.records} == {"ray"}  # 4 + the control
    chart = chart_by_title(at, "Accuracy vs latency")
    assert point_count(chart) == 5 and "host: " in str(chart["data"][1]["customdata"])


def test_sweep_page_without_ray_says_so_and_stays_local(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as where it is not installed
    at = new_app(SWEEP_PAGE)
    assert at.radio(key="sw_executor").disabled and at.radio(key="sw_executor").value == "local"
    assert any("Ray is not installed: pip install 'ray>=2.9'" in i.value for i in at.info)


def test_bad_executor_choices_are_refused_with_one_line(monkeypatch, capsys):
    with pytest.raises(ConfigError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--executor ray"):
        make_executor("local", ray_address="auto")
    assert cli.main(["sweep", "--ray-address", "auto"]) == 2
    assert capsys.readouterr().err.strip() == "error: --ray-address needs --executor ray"
    assert cli.main(["sweep", "--executor", "ray", "--ray-address", f"127.0.0.1:{_free_port()}"]) == 2
    assert capsys.readouterr().err.startswith("error: no Ray head answers at 127.0.0.1:")
    assert cli.main(["sweep", "--executor", "ray", "--ray-address", "nowhere"]) == 2
    assert "is not auto or HOST:PORT" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=re.escape("Ray is not installed: pip install 'ray>=2.9'")):
        make_executor("ray")


# -- a two-node cluster on loopback ------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """pid and every process below it (Linux /proc), so a node's workers die with its raylet."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _kill_tree(pid: int) -> None:
    for p in _descendants(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills a node's processes through /proc")
def test_a_node_dying_mid_sweep_loses_no_point_and_duplicates_none(digits, tmp_path):
    scenario, baseline = digits
    ray_cli = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    port, node_port = _free_port(), _free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, **RAY_ENV}
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--block", "--disable-usage-stats"]
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []
    # A short temp dir: Ray's socket paths must stay under the 107-byte limit.
    temp_dir = Path("/tmp") / f"gemini-ray-{os.getpid()}-{port}"

    def start(args, name):
        # --block keeps `ray start` as the parent of the node's processes; our own session so we can end it.
        proc = subprocess.Popen([ray_cli, "start", *args, *common], env=env, start_new_session=True,
                                stdout=open(logs / f"{name}.log", "w"), stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        start(["--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", str(temp_dir)], "head")
        for _ in range(120):
            if subprocess.run([ray_cli, "status", "--address", address], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(1)
        else:
            pytest.fail("the head node did not come up: " + (logs / "head.log").read_text()[-2000:])
        second = start(["--address", address, "--node-manager-port", str(node_port)], "second")
        ray_executor.connect(address)
        for _ in range(120):
            alive = [n for n in ray.nodes() if n["Alive"]]
            if len(alive) == 2:
                break
            time.sleep(1)
        else:
            pytest.fail("the second node did not join: " + (logs / "second.log").read_text()[-2000:])
        summary = ray_executor.cluster_summary(address)
        assert summary["n_nodes"] == 2 and summary["cpus"] == 2.0 and summary["gpus"] == 0.0
        second_id = next(n["NodeID"] for n in alive if int(n["NodeManagerPort"]) == node_port)[:12]

        # 4 units of 4 points and the control; 1 CPU per task, so one task runs on each node at a time.
        spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.0, 0.25, 0.5, 0.75), bits=(32, 8, 4, 2),
                         executions=("dense",), finetune_steps=(10,), batch_size=8)
        store = Store(tmp_path / "cluster.sqlite")
        seen, killed_unit = [], None
        for record in run_sweep(scenario, spec, store=store, executor="ray", ray_address=address,
                                latency_kwargs={"min_runs": 5, "min_seconds": 0.4}, baseline=baseline):
            seen.append(record)
            if killed_unit is None and record.get("ray_node") == second_id:
                _kill_tree(second.pid)  # the node dies mid-task: raylet, its workers, its agents
                # a unit is its pruning ratio, and the control (ratio 0, recovered) is a unit of its own
                killed_unit = (record["config"]["prune_ratio"], record["label"].startswith("control"))
        assert killed_unit is not None, "no point ran on the second node"
        keys = [CompressionConfig.from_dict(r["config"]).key() for r in seen]
        assert len(keys) == len(set(keys)) == spec.n_points() == 17  # every point, each yielded once
        stored = store.points(seen[0]["run_id"])
        assert len(stored) == 17 and len({p["point_key"] for p in stored}) == 17
        assert all(p["status"] == "ok" for p in stored), [p.get("error") for p in stored if p["status"] != "ok"]
        # The unit that was running on the dying node streamed a point from it (so before the task ended),
        # then was re-run on the head, which measured the rest.
        nodes = [r["ray_node"] for r in seen
                 if (r["config"]["prune_ratio"], r["label"].startswith("control")) == killed_unit]
        if killed_unit[1]:  # the control is one point: it streamed from the dying node and was not re-run
            assert nodes == [second_id]
        else:
            assert len(nodes) == 4 and second_id in nodes and len(set(nodes)) == 2
    finally:
        ray_executor.shutdown()
        for proc in reversed(procs):
            _kill_tree(proc.pid)
            proc.wait(timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)
