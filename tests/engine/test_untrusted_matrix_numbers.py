"""Untrusted input, class 6: numbers (NaN, infinities, zero, absurd sizes, devices, output paths).

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

import os

import pytest
import torch

try:
    from tests.engine.untrusted_support import run_cli
except ImportError:  # pragma: no cover
    from untrusted_support import run_cli


# == 6. numbers ================================================================================================
NUMBER_CASES = [
    ("lr-nan", ["train", "--lr", "nan"], "--lr nan is not a finite number"),
    ("lr-inf", ["train", "--lr", "inf"], "--lr inf is not a finite number"),
    ("lr-zero", ["train", "--lr", "0"], "--lr 0.0 must be above 0"),
    ("lr-negative", ["train", "--lr=-1"], "--lr -1.0 must be above 0"),
    ("threads-100000", ["train", "--threads", "100000"], "--threads 100000 is more than this machine can use"),
    ("threads-0", ["train", "--threads", "0"], "--threads 0 must be at least 1"),
    ("epochs-0", ["train", "--epochs", "0"], "--epochs must be at least 1"),
    ("max-steps-0", ["train", "--max-steps", "0"], "--max-steps must be at least 1"),
    ("train-batch-0", ["train", "--train-batch-size", "0"], "--train-batch-size must be at least 1"),
    ("max-length-0", ["sweep", "--scenario", "text", "--data", "{d}/good.csv", "--max-length", "0"],
     "--max-length must be at least 2"),
    ("allocate-max-drop-nan", ["sensitivity", "--allocate", "max-drop=nan"], "budget nan is not a finite number"),
    ("allocate-speedup-inf", ["sensitivity", "--allocate", "speedup=inf"], "speed-up inf is not a finite number"),
    ("allocate-max-drop-500", ["sensitivity", "--allocate", "max-drop=500"], "above 100 points"),
    ("prune-ratio-nan", ["sweep", "--prune-method", "l1-structured", "--prune-ratios", "nan"], "prune ratio nan"),
    ("device-tpu", ["train", "--device", "tpu"], "device 'tpu' is not one of cpu, cuda, cuda:N"),
    ("device-cuda-9", ["train", "--device", "cuda:9"], "cuda:9"),
    ("out-is-a-folder", ["sweep", "--out", "{d}/a_dir_out"], "is a folder; give a file name"),
    ("tabular-inf", ["sweep", "--scenario", "tabular", "--data", "{d}/inf.csv"],
     "column 'x' holds 1 infinite or out-of-range value(s)"),
    ("tabular-neg-inf", ["sweep", "--scenario", "tabular", "--data", "{d}/neg_inf.csv", "--label-column", "label"],
     "column 'x' holds 1 infinite or out-of-range value(s) (beyond +-1e+30) at data row(s) 6"),
    ("tabular-1e300", ["sweep", "--scenario", "tabular", "--data", "{d}/huge_value.csv"], "data row(s) 41"),
]
if not torch.cuda.is_available():
    NUMBER_CASES.append(("device-cuda-without-cuda", ["train", "--device", "cuda"], "no usable CUDA GPU"))


@pytest.mark.parametrize("case_id, argv, message", NUMBER_CASES, ids=[c[0] for c in NUMBER_CASES])
def test_numbers(case_id, argv, message, home, d, monkeypatch, capsys):
    line = run_cli([a.format(d=d) for a in argv], home[0], monkeypatch, capsys, home[1])
    assert message in line, line


def test_out_unwritable(home, d, tmp_path, monkeypatch, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    line = run_cli(["sweep", "--out", str(folder / "p.jsonl")], home[0], monkeypatch, capsys, home[1])
    assert "is not writable" in line
