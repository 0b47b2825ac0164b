"""Smoke test of the benchmark suite: ``python -m bench --tiny --only size,sparse`` into a temp folder.

The bench itself lives in bench/; this only checks that it runs and writes sane JSON and Markdown
(about 30-60 s on 2 idle cores: digits trained 2 epochs, one Linear shape for the sparse rows).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_out")
    docs = REPO / "docs" / "benchmarks.md"
    before = docs.stat().st_mtime_ns if docs.exists() else None
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "bench", "--tiny", "--only", "size,sparse", "--out-dir", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    after = docs.stat().st_mtime_ns if docs.exists() else None
    return out, proc, before == after


def _load(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


def _check_env(env: dict) -> None:
    for key in ("device", "threads", "torch", "date", "command", "loadavg_start", "seconds"):
        assert key in env, key
    assert env["threads"] >= 1
    assert "--tiny" in env["command"]


def test_size_json(tiny_run):
    out, _, _ = tiny_run
    size = _load(out, "size")
    assert size["section"] == "size" and size["mode"] == "tiny"
    _check_env(size["env"])
    rows = size["rows"]
    assert {r["bits"] for r in rows} == {32, 16, 8, 6, 4, 3, 2}
    for r in rows:
        assert r["file_bytes"] >= r["ideal_bytes"] > 0
        assert r["file_over_ideal"] >= 1.0
        assert r["reduction_vs_fp32"] > 0
        assert r["file_matches_storage"] is True  # digits points are exported and checked
    by_bits = {r["bits"]: r["file_bytes"] for r in rows}
    assert by_bits[32] > by_bits[16] > by_bits[8] > by_bits[4] > by_bits[2]
    assert size["targets"] and size["targets"][0]["status"] == "not evaluated"  # MiniLM is skipped in tiny


def test_sparse_json(tiny_run):
    out, _, _ = tiny_run
    sparse = _load(out, "sparse")
    _check_env(sparse["env"])
    assert sparse["rows"]
    for r in sparse["rows"]:
        assert r["speedup"]["median"] > 0 and r["speedup"]["n"] >= 1
        assert r["speedup"]["min"] <= r["speedup"]["median"] <= r["speedup"]["max"]
        assert r["max_abs_diff"] < 1e-3  # sparse and dense compute the same layer
    assert sparse["crossovers"] and "crossover_sparsity" in sparse["crossovers"][0]
    assert sparse["engine_policy"]["default_execution"] == "dense"
    statuses = {t["target"]: t["status"] for t in sparse["targets"]}
    assert set(statuses) == {"Sparse never chosen where slower", "Sparse at 95%"}
    assert sparse["suggestion_check"]["points"]


def test_markdown_and_run_record(tiny_run):
    out, _, docs_untouched = tiny_run
    page = (out / "benchmarks.md").read_text()
    assert "## Targets" in page and "## 1. Size" in page and "SparseLinear vs nn.Linear" in page
    run = _load(out, "_run")
    assert run["sections"] == ["size", "sparse"] and run["failed"] == []
    assert docs_untouched, "a run with --out-dir must not rewrite docs/benchmarks.md"
    assert not (out / "pruning.json").exists()


def test_summary_and_crossover_helpers():
    from bench.common import summary
    from bench.report import fmt
    from bench.sparse import crossovers

    s = summary([3.0, 1.0, 2.0, 10.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0 and s["n"] == 4
    assert summary([])["median"] is None
    assert fmt(s, "x").startswith("2.50x (1.00")
    assert fmt(None, "x") == "–" and fmt(True, "s") == "yes" and fmt(1234, ",d") == "1,234"

    def row(sp, med):
        return {"shape": "a", "tokens": "t", "sparsity": sp, "speedup": {"median": med}}

    # faster at 90% but slower again at 95%: the crossover is where it stays faster
    rows = [row(0.5, 0.2), row(0.9, 1.1), row(0.95, 0.9), row(0.99, 2.0)]
    assert crossovers(rows)[0]["crossover_sparsity"] == 0.99
    assert crossovers(rows)[0]["slower_at"] == [0.5, 0.95]
    assert crossovers([row(0.5, 0.5)])[0]["crossover_sparsity"] is None
