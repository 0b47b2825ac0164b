"""One rule for which point to ship: the ship panel, the Report page, the HTML report's default and
``points --recommend`` all come from ``recommend``; never a slower point while one that is not slower meets
the bounds."""
from __future__ import annotations

import pytest

from gemini_core.results.store import Store
from gemini_core.results.suggest import SHIP_RULE, Constraints, recommend, suggest_point
from gemini_core.results.table import points_frame
from tests.fixed_run import EXPECTED_LOSS_1_LABEL, RUN_ID, write_fixed_run


def _with_extra(tmp_path, label, execution, accuracy, latency_ms, size_bytes):
    store = Store(tmp_path / "store.sqlite")
    ids = write_fixed_run(store)
    record = {"run_id": RUN_ID, "label": label, "status": "ok",
              "config": {"prune_method": "l1-structured", "prune_ratio": 0.25, "finetune_steps": 60, "bits": 2,
                         "granularity": "per-channel", "execution": execution},
              "accuracy": accuracy, "latency_ms_p50": latency_ms, "latency_ms_p90": latency_ms * 1.1,
              "size_bytes": size_bytes, "params": 1000, "nonzero_params": 1000, "macs": 1000,
              "peak_memory_bytes": 4096, "batch_size": 32, "threads": 1, "device": "cpu", "backend": "torch"}
    ids[label] = store.add_point(RUN_ID, "fixed-baseline", label, record)
    return ids, points_frame(store.points(RUN_ID))


def test_a_far_slower_point_is_not_shipped_while_faster_ones_meet_the_bounds(tmp_path):
    # 80x smaller but 4.5x slower than dense fp32: the largest size x speed gain of all, within the loss
    ids, df = _with_extra(tmp_path, "l1 0.25 · 2-bit · sparse", "sparse", 0.969, 4.5, 1_000)
    rec = recommend(df, Constraints(max_loss=1.0))
    assert rec.point_id == ids[EXPECTED_LOSS_1_LABEL]
    assert SHIP_RULE in rec.reason
    assert int(suggest_point(df)["point_id"]) == rec.point_id  # the Report's default is the same point


def test_the_alternatives_follow_the_same_rule(tmp_path):
    # the most accurate point of all, but slower than dense fp32 (a fine-tuned unpruned control, say)
    ids, df = _with_extra(tmp_path, "slow but accurate", "dense", 0.975, 2.0, 80_000)
    rec = recommend(df, Constraints(max_loss=1.0))
    assert rec.alternatives and ids["slow but accurate"] not in [a["point_id"] for a in rec.alternatives]
    assert all(a["speedup"] >= 1.0 for a in rec.alternatives)


@pytest.mark.parametrize("tolerance", [None, 1.0, 12.0])
def test_suggest_point_is_the_recommendation(tmp_path, tolerance):
    _, df = _with_extra(tmp_path, "l1 0.25 · 2-bit · sparse", "sparse", 0.969, 4.5, 1_000)
    rec = recommend(df, Constraints(max_loss=tolerance) if tolerance is not None else None)
    assert int(suggest_point(df, tolerance)["point_id"]) == rec.point_id
