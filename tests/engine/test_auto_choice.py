"""``auto`` cannot keep a point slower than torch: its own paired, interleaved timings must put the winner
ahead of the reference beyond the noise, and a fresh timing must confirm it. Scripted sleeps stand for the
runtimes (a load spike is a few slow rounds); margins are wide enough for a loaded 2-core machine."""
from __future__ import annotations

import time

import pytest
import torch

from gemini_core.results.runtime_info import auto_choice_reason
from gemini_core.runtimes.auto import check_against_reference, choose_fastest, median_interval, paired_speedup


def _scripted(ms_by_round: list[float], warmup: int):
    """A model whose k-th timed call sleeps ``ms_by_round[k]`` ms (the last value afterwards); warm-up calls 1 ms."""
    calls = [0]

    def model(**_inputs):
        index = calls[0] - warmup
        calls[0] += 1
        time.sleep((1.0 if index < 0 else ms_by_round[min(index, len(ms_by_round) - 1)]) / 1e3)
        return torch.zeros(1, 2)

    return model


def _same_accuracy(_model) -> float:
    return 0.9  # accuracy is not what these tests are about; the model is not called for it


def test_auto_keeps_torch_when_its_own_rounds_put_the_candidate_behind():
    # A load spike in the first four rounds hits both; round by round the candidate is slower in 6 of 7,
    # yet its median (12 ms) is below torch's (60 ms): a choice by separate medians keeps the slower one.
    torch_ms = [60, 60, 60, 60, 8, 8, 8]
    candidate_ms = [90, 90, 90, 12, 12, 12, 12]
    candidates = {"torch dense": _scripted(torch_ms, warmup=1), "runtime": _scripted(candidate_ms, warmup=1)}
    result = choose_fastest(candidates, {}, _same_accuracy, tolerance_points=1.0, reference="torch dense",
                            rounds=7, warmup=1)
    rows = result["candidates"]
    assert rows["runtime"]["latency_ms_p50"] < rows["torch dense"]["latency_ms_p50"]  # medians alone mislead
    assert result["chosen"] == "torch dense"  # old auto (fastest median) kept "runtime" here
    assert rows["runtime"]["speedup_vs_reference"] < 1 and not rows["runtime"]["beats_reference"]
    assert "no candidate" in result["decided_by"] and result["confirmation"] is None


def test_auto_keeps_torch_when_the_confirmation_does_not_repeat_the_win():
    # Ahead in the selection rounds (3x), behind when timed again: the confirmation decides, and says so.
    rounds = 5
    candidates = {"torch dense": _scripted([30] * 40, warmup=1),
                  "runtime": _scripted([10] * rounds + [60] * 40, warmup=1)}
    result = choose_fastest(candidates, {}, _same_accuracy, tolerance_points=1.0, reference="torch dense",
                            rounds=rounds, warmup=1, busy=lambda: False)
    assert result["candidates"]["runtime"]["beats_reference"]  # the selection alone would have kept it
    confirmation = result["confirmation"]
    assert confirmation["candidate"] == "runtime" and not confirmation["confirmed"]
    assert result["chosen"] == "torch dense" and result["decided_by"].startswith("confirmation")
    assert len(confirmation["attempts"]) == 1 and len(confirmation["attempts"][0]["candidate_rounds_ms"]) == rounds
    reason = auto_choice_reason({"auto_choice": result})  # what the record panel shows
    assert reason.startswith("auto kept torch dense, the reference, over 1 other candidates")
    assert "runtime was not ahead when timed again" in reason and "Decided by confirmation" in reason


def test_auto_keeps_a_candidate_that_is_ahead_in_every_round_and_when_timed_again():
    candidates = {"torch dense": _scripted([40] * 40, warmup=1), "slow": _scripted([80] * 40, warmup=1),
                  "fast": _scripted([10] * 40, warmup=1)}
    busy_answers = iter([True, False])  # the first confirmation ran on a loaded machine: it is taken again
    result = choose_fastest(candidates, {}, _same_accuracy, tolerance_points=1.0, reference="torch dense",
                            rounds=5, warmup=1, busy=lambda: next(busy_answers))
    assert result["chosen"] == "fast" and result["confirmation"]["confirmed"]
    assert [a["machine_busy"] for a in result["confirmation"]["attempts"]] == [True, False]
    low, high = result["candidates"]["fast"]["speedup_interval"]
    assert 1 < low <= result["candidates"]["fast"]["speedup_vs_reference"] <= high
    assert not result["candidates"]["slow"]["beats_reference"]


def test_a_candidate_outside_the_accuracy_tolerance_never_wins_however_fast():
    candidates = {"torch dense": _scripted([40] * 40, warmup=1), "wrong": _scripted([5] * 40, warmup=1)}
    accuracy = {id(candidates["torch dense"]): 0.90, id(candidates["wrong"]): 0.85}
    result = choose_fastest(candidates, {}, lambda m: accuracy[id(m)], tolerance_points=1.0,
                            reference="torch dense", rounds=5, warmup=1, busy=lambda: False)
    assert result["chosen"] == "torch dense" and result["candidates"]["wrong"]["beats_reference"]


def test_median_interval_uses_the_sign_test_order_statistics():
    assert median_interval([3, 1, 2, 5, 4]) == pytest.approx((1, 5, 1 - 2 / 32))  # 5 values: min..max, 93.75%
    low, high, coverage = median_interval(list(range(1, 10)))  # 9 values: 2nd..8th, 96.1%
    assert (low, high) == (2, 8) and coverage == pytest.approx(1 - 2 * 10 / 512)
    tied = paired_speedup([10, 10, 10, 10, 10], [9, 9, 11, 9, 9])  # one round behind: the interval reaches 1
    assert tied["speedup_vs_reference"] > 1 and not tied["beats_reference"]


def test_the_after_sweep_check_says_when_the_kept_point_is_now_slower_than_torch():
    behind = check_against_reference(_scripted([30] * 20, warmup=1), _scripted([10] * 20, warmup=1), {}, rounds=5)
    assert behind["verdict"] == "slower than torch" and behind["speedup_interval"][1] < 1 and behind["rounds"] == 5
    ahead = check_against_reference(_scripted([10] * 20, warmup=1), _scripted([30] * 20, warmup=1), {}, rounds=5)
    assert ahead["verdict"] == "faster than torch" and ahead["speedup_interval"][0] > 1
    chosen = choose_fastest({"torch dense": _scripted([40] * 40, warmup=1), "fast": _scripted([10] * 40, warmup=1)},
                            {}, _same_accuracy, 1.0, reference="torch dense", rounds=5, warmup=1, busy=lambda: False)
    reason = auto_choice_reason({"auto_choice": chosen, "auto_check": behind})
    assert "Timed again after the sweep: slower than torch" in reason


@pytest.mark.slow
def test_a_sweep_unit_checks_its_auto_point_against_torch_at_the_same_storage(digits):
    from gemini_core.config import CompressionConfig
    from gemini_core.kinds.classifier.spec import SweepUnit
    from gemini_core.kinds.classifier.units import AUTO_CHECK_ROUNDS, run_unit

    scenario, baseline = digits
    unit = SweepUnit(prune_setting=CompressionConfig(), configs=(CompressionConfig(execution="auto"),))
    records = list(run_unit(baseline.model, scenario, unit, batch_size=16, device="cpu",
                            latency_kwargs={"min_runs": 2, "min_seconds": 0.0}))
    check = records[0]["auto_check"]
    assert records[0]["status"] == "ok" and "error" not in check and check["rounds"] == AUTO_CHECK_ROUNDS
    assert check["verdict"] in ("faster than torch", "slower than torch", "no measurable difference")
    assert len(check["torch_rounds_ms"]) == AUTO_CHECK_ROUNDS
