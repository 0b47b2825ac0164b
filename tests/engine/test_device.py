"""Threads and load: what decides a CPU latency is chosen on purpose and recorded with it."""
import pytest
import torch

from gemini_core.cli import main
from gemini_core.config import CompressionConfig
from gemini_core.device import compute_threads_for_app, device_info, set_compute_threads
from gemini_core.errors import ConfigError
from gemini_core.kinds.classifier.units import point_key


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_app_leaves_one_core_to_the_ui(monkeypatch):
    monkeypatch.delenv("GEMINI_THREADS", raising=False)
    assert compute_threads_for_app(cores=2) == 1
    assert compute_threads_for_app(cores=16) == 15
    assert compute_threads_for_app(cores=1) == 1


def test_threads_variable_wins_and_is_checked(monkeypatch):
    monkeypatch.setenv("GEMINI_THREADS", "3")
    assert compute_threads_for_app(cores=2) == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("GEMINI_THREADS", bad)
        with pytest.raises(ConfigError, match="GEMINI_THREADS"):
            compute_threads_for_app()


def test_point_key_depends_on_cpu_threads(restore_threads):
    config = CompressionConfig(bits=8)
    set_compute_threads(1)
    one = point_key(config, 32, "cpu")
    set_compute_threads(2)
    two = point_key(config, 32, "cpu")
    assert one != two
    assert point_key(config, 32, "cpu") == two  # stable for the same setting


def test_device_info_records_cores_and_load(restore_threads):
    set_compute_threads(1)
    info = device_info("cpu")
    assert info["threads"] == 1
    assert info["cores"] >= 1
    assert info["load_avg_1m"] is None or info["load_avg_1m"] >= 0


def test_cli_threads_flag(tmp_path, monkeypatch, capsys, restore_threads):
    monkeypatch.setenv("GEMINI_HOME", str(tmp_path))
    assert main(["train", "--threads", "0"]) == 2
    assert "--threads 0" in capsys.readouterr().err
    monkeypatch.setenv("GEMINI_THREADS", "zero")
    assert main(["runs"]) == 2
    assert "GEMINI_THREADS" in capsys.readouterr().err
