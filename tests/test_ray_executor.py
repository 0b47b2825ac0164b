"""The Ray executor: same points as local, streamed back; a node that dies mid-sweep loses no point.

Ray start-up is slow on 2 cores (a local instance ~10 s, a two-node loopback cluster ~20 s), so
the module keeps to two tests on small digits grids.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from gemini_core import ray_executor  # noqa: E402
from gemini_core.config import CompressionConfig  # noqa: E402
from gemini_core.errors import ConfigError  # noqa: E402
from gemini_core.store import Store  # noqa: E402
from gemini_core.sweep import SweepSpec, make_executor, run_sweep  # noqa: E402

FAST = {"min_runs": 3, "min_seconds": 0.0}
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}  # a loopback test cluster: no token


@pytest.fixture(scope="module", autouse=True)
def _ray_session():
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    yield
    ray_executor.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _by_config(records):
    return {CompressionConfig.from_dict(r["config"]).key(): r for r in records}


def test_ray_sweep_gives_the_local_points_and_accuracies_and_resumes(digits, tmp_path):
    scenario, baseline = digits
    spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.0, 0.5), bits=(32, 4),
                     executions=("dense", "sparse"), finetune_steps=(20,), batch_size=8)
    local = list(run_sweep(scenario, baseline, spec, store=Store(tmp_path / "local.sqlite"), latency_kwargs=FAST))
    store = Store(tmp_path / "ray.sqlite")
    remote = list(run_sweep(scenario, baseline, spec, store=store, executor="ray", latency_kwargs=FAST))

    assert len(local) == len(remote) == spec.n_points() == 8
    local_by, remote_by = _by_config(local), _by_config(remote)
    assert set(local_by) == set(remote_by)  # the same set of points
    for key, rec in remote_by.items():
        assert rec["status"] == "ok", rec.get("error")
        assert rec["executor"] == "ray" and rec["ray_node"]
        # Pruning and fine-tuning are seeded: the worker (1 thread) reaches the same accuracy as the driver.
        assert rec["accuracy"] == pytest.approx(local_by[key]["accuracy"], abs=1e-6), rec["label"]
        assert rec["size_bytes"] == local_by[key]["size_bytes"]
        assert rec["threads"] == 1  # one CPU per task on a 2-CPU instance, and torch told so
        assert rec["host"] == socket.gethostname()
    run_id = remote[0]["run_id"]
    assert run_id != local[0]["run_id"]  # Ray points are keyed apart from local ones
    assert len(store.points(run_id)) == 8 and store.runs()[0]["status"] == "finished"

    # A re-run resumes like a local one: everything is found in the store, nothing is sent to Ray.
    again = list(run_sweep(scenario, baseline, spec, store=store, executor="ray", latency_kwargs=FAST))
    assert len(again) == 8 and all(r["reused"] for r in again)
    assert len(store.points(run_id)) == 8


def test_unknown_executor_and_address_without_ray_are_refused():
    with pytest.raises(ConfigError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--executor ray"):
        make_executor("local", ray_address="auto")


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

    def start(args, name):
        # --block keeps `ray start` as the parent of the node's processes; our own session so we can end it.
        proc = subprocess.Popen([ray_cli, "start", *args, *common], env=env, start_new_session=True,
                                stdout=open(logs / f"{name}.log", "w"), stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        # A short temp dir: Ray's socket paths must stay under the 107-byte limit.
        temp_dir = Path("/tmp") / f"gemini-ray-{os.getpid()}-{port}"
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

        # 4 units of 4 points; 1 CPU per task, so one task runs on each node at a time.
        spec = SweepSpec(prune_methods=("l1-structured",), prune_ratios=(0.0, 0.25, 0.5, 0.75), bits=(32, 8, 4, 2),
                         executions=("dense",), finetune_steps=(10,), batch_size=8)
        store = Store(tmp_path / "cluster.sqlite")
        seen, killed_unit = [], None
        for record in run_sweep(scenario, baseline, spec, store=store, executor="ray", ray_address=address,
                                latency_kwargs={"min_runs": 5, "min_seconds": 0.4}):
            seen.append(record)
            if killed_unit is None and record.get("ray_node") == second_id:
                _kill_tree(second.pid)  # the node dies mid-task: raylet, its workers, its agents
                killed_unit = record["config"]["prune_ratio"]
        assert killed_unit is not None, "no point ran on the second node"
        keys = [CompressionConfig.from_dict(r["config"]).key() for r in seen]
        assert len(keys) == len(set(keys)) == spec.n_points() == 16  # every point, each yielded once
        stored = store.points(seen[0]["run_id"])
        assert len(stored) == 16 and len({p["point_key"] for p in stored}) == 16
        assert all(p["status"] == "ok" for p in stored), [p.get("error") for p in stored if p["status"] != "ok"]
        # The unit that was running on the dying node streamed a point from it (so before the task ended),
        # then was re-run on the head, which measured the rest.
        nodes = [r["ray_node"] for r in seen if r["config"]["prune_ratio"] == killed_unit]
        assert len(nodes) == 4 and second_id in nodes and len(set(nodes)) == 2
    finally:
        ray_executor.shutdown()
        for proc in reversed(procs):
            _kill_tree(proc.pid)
            proc.wait(timeout=30)
