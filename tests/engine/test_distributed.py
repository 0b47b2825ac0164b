"""Distributed training: torchrun + DistributedDataParallel on 2 CPU processes (gloo)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_launch_command_runs_the_cli_train_command_under_torchrun():
    from gemini_core.training.distributed import launch_command, strip_nproc

    argv = ["train", "--adaptive", "--nproc", "2", "--epochs", "3", "--nproc=4"]
    assert strip_nproc(argv) == ["train", "--adaptive", "--epochs", "3"]
    cmd = launch_command(argv, 2, port=29999)
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert cmd[cmd.index("--nproc-per-node") + 1] == "2" and cmd[cmd.index("--master-addr") + 1] == "127.0.0.1"
    # each worker runs the gemini CLI's own `train --adaptive`, without --nproc (workers must not launch again)
    assert cmd[cmd.index("-m", 3) + 1:] == ["gemini_core", "train", "--adaptive", "--epochs", "3"]


def test_a_torchrun_worker_runs_only_train_adaptive(capsys, monkeypatch):
    from gemini_core.cli import main

    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    assert main(["train", "--scenario", "digits"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "distributed workers run `train --adaptive ...`" in err[0]


def test_distributed_does_not_import_the_cli():
    """No circle: the CLI calls distributed.py, never the other way round."""
    code = ("import sys, gemini_core.training.distributed; "
            "print(sorted(m for m in sys.modules if m.startswith('gemini_core.cli')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_two_cpu_processes_train_like_one_and_write_one_checkpoint(tmp_path):
    """`train --adaptive --nproc 2` on digits: finishes, matches a single-process run, one checkpoint."""
    from gemini_core.adaptive import adaptive_key
    from gemini_core.adaptive.train import AdaptiveSettings, train_adaptive
    from gemini_core.scenarios import get_scenario

    home = tmp_path / "home"
    env = {**os.environ, "GEMINI_HOME": str(home), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    flags = ["--scenario", "digits", "--epochs", "4", "--target-ratio", "0.5", "--end-epoch", "2",
             "--device", "cpu"]
    cmd = [sys.executable, "-m", "gemini_core", "train", "--adaptive", *flags, "--nproc", "2"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 alone prints the result
    result = json.loads(lines[0])
    assert result["summary"]["world_size"] == 2 and result["summary"]["achieved_ratio"] == 0.5

    # exactly one checkpoint, no temporary folders left behind
    written = sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())
    assert written == [f"baselines/{result['baseline_key']}/meta.json",
                       f"baselines/{result['baseline_key']}/model.safetensors"]

    scenario = get_scenario("digits")
    settings = AdaptiveSettings(epochs=4, target_ratio=0.5, end_epoch=2)
    single = train_adaptive(scenario, settings, device="cpu", cache=False)
    # the same settings on 2 processes: another key (world size 2 gives other weights than one process)
    assert result["baseline_key"] == adaptive_key(scenario, settings.resolved(scenario), None, 2) != single.key
    assert result["summary"]["params_after"] == single.summary["params_after"]  # identical pruning
    assert abs(result["test_accuracy"] - single.test_accuracy) <= 0.02, (result["test_accuracy"],
                                                                         single.test_accuracy)
    meta = json.loads((home / "baselines" / result["baseline_key"] / "meta.json").read_text())
    assert len(meta["history"]) == 4 and meta["pruning_history"]


def _weights_sha256(path) -> str:
    from safetensors.torch import load_file

    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(str(path)).items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.slow
def test_ddp_rank0_repeats_across_runs_and_worker_thread_counts(tmp_path):
    """Issue 15: DDP on 2 ranks cannot give one process's weights (each rank's BatchNorm sees half a batch,
    gradients are summed in another order), so the key holds the world size; what holds is that rank 0's
    result repeats bit for bit: two runs in fresh homes, workers started with 1 and with 2 threads."""
    from safetensors.torch import save_file

    from gemini_core.adaptive import AdaptiveSettings, adaptive_key, train_adaptive
    from gemini_core.scenarios import get_scenario

    flags = ["--scenario", "digits", "--epochs", "2", "--target-ratio", "0.5", "--end-epoch", "1", "--device", "cpu"]
    runs = []
    for omp_threads in ("1", "2"):
        home = tmp_path / f"home{omp_threads}"
        env = {**os.environ, "GEMINI_HOME": str(home), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": omp_threads}
        cmd = [sys.executable, "-m", "gemini_core", "train", "--adaptive", *flags, "--nproc", "2"]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
        assert result["summary"]["world_size"] == 2
        weights = home / "baselines" / result["baseline_key"] / "model.safetensors"
        runs.append((result["baseline_key"], _weights_sha256(weights), result["test_accuracy"]))
    assert runs[0] == runs[1]  # same key, same weights, same test accuracy

    scenario = get_scenario("digits")
    settings = AdaptiveSettings(epochs=2, target_ratio=0.5, end_epoch=1)
    assert runs[0][0] == adaptive_key(scenario, settings.resolved(scenario), None, 2)
    single = train_adaptive(scenario, settings, device="cpu", cache=False)
    assert single.key != runs[0][0]
    single_path = tmp_path / "single.safetensors"
    save_file({k: v.contiguous() for k, v in single.model.state_dict().items()}, str(single_path))
    assert _weights_sha256(single_path) != runs[0][1]  # why the world size is in the key


def test_a_ddp_baseline_missing_from_the_home_is_not_silently_retrained_on_one_process(tmp_path, monkeypatch):
    """A run measured on a 2-rank baseline must not be rebuilt from a 1-process one (other weights)."""
    from gemini_core.adaptive import AdaptiveSettings, baseline_from_adaptive_description
    from gemini_core.errors import CheckpointError
    from gemini_core.scenarios import get_scenario

    monkeypatch.setenv("GEMINI_HOME", str(tmp_path))
    scenario = get_scenario("digits")
    adaptive = {**AdaptiveSettings(epochs=1).resolved(scenario).to_dict(), "key": "digits-adaptive-gone",
                "world_size": 2, "init_baseline": None}
    with pytest.raises(CheckpointError, match="trained on 2 processes.*--nproc 2"):
        baseline_from_adaptive_description(scenario, {"adaptive": adaptive})
