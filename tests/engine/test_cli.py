import json
import os
import subprocess
import sys

import pytest

from gemini_core.cli import main
from tests.conftest import REPO


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--prune-method", "l1-structured", "--prune-ratios", "1.2"], "prune ratio 1.2 is outside [0, 0.95]"),
    (["sweep", "--bits", "1"], "bits 1 not supported"),
    (["sweep", "--prune-method", "pruney"], "unknown prune method 'pruney'"),
    (["sweep", "--batch-size", "0"], "batch size 0"),
    (["sweep", "--bits", ""], "empty list for bits"),
    (["sweep", "--scenario", "nope"], "unknown scenario 'nope'"),
    (["sweep", "--scenario", "digits", "--data", "x.csv"], "uses its built-in data"),
    (["points", "no-such-run"], "no run 'no-such-run'"),
    (["train", "--epochs", "0"], "--epochs must be at least 1"),
    (["sweep", "--out", "/no/such/folder/points.jsonl"], "does not exist"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_unknown_flag_is_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--bitz", "4"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bitz" in err[0]


def test_cli_sweep_writes_jsonl_and_lists_runs(tmp_path):
    """The headless door: a real subprocess, as a user runs it."""
    env = {**os.environ, "GEMINI_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    out = tmp_path / "points.jsonl"
    cmd = [sys.executable, "-m", "gemini_core", "sweep", "--prune-method", "l1-structured", "--prune-ratios",
           "0.5", "--bits", "32,8", "--finetune-steps", "10", "--epochs", "2", "--batch-size", "4", "--out", str(out)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4  # the fp32 reference, the control (unpruned, 10 steps) + 2 points
    assert sum(r["label"].startswith("control") for r in records) == 1
    assert {r["config"]["bits"] for r in records} == {32, 8}
    assert all(r["status"] == "ok" and r["batch_size"] == 4 for r in records)
    runs = subprocess.run([sys.executable, "-m", "gemini_core", "runs"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    listed = [json.loads(line) for line in runs.stdout.splitlines()]
    assert len(listed) == 1 and listed[0]["points_ok"] == 4
    points = subprocess.run([sys.executable, "-m", "gemini_core", "points", listed[0]["run_id"]], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert len(points.stdout.splitlines()) == 4
    front = subprocess.run([sys.executable, "-m", "gemini_core", "points", listed[0]["run_id"], "--front"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    on_front = [json.loads(line) for line in front.stdout.splitlines()]
    assert 1 <= len(on_front) <= 3
    for p in on_front:  # nothing stored beats a front point on accuracy, latency and size at once
        assert not any(q["accuracy"] >= p["accuracy"] and q["latency_ms_p50"] <= p["latency_ms_p50"]
                       and q["size_bytes"] <= p["size_bytes"] and q["point_id"] != p["point_id"]
                       and (q["accuracy"], q["latency_ms_p50"], q["size_bytes"])
                       != (p["accuracy"], p["latency_ms_p50"], p["size_bytes"]) for q in records)


# -- flags mirror the settings dataclasses -----------------------------------------------------------------
def _settings_flags():
    from gemini_core.cli.common import TRAIN_FLAGS
    from gemini_core.cli.export import CONFIG_FLAGS
    from gemini_core.cli.train import ADAPTIVE_FLAGS
    from gemini_core.kinds.classifier.flags import SPEC_FLAGS

    # command -> the settings flags its parser carries
    return {"train": (TRAIN_FLAGS, ADAPTIVE_FLAGS), "sweep": (TRAIN_FLAGS, SPEC_FLAGS),
            "sensitivity": (TRAIN_FLAGS,), "export": (TRAIN_FLAGS, CONFIG_FLAGS)}


def _subparsers():
    import argparse

    from gemini_core.cli import build_parser

    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_settings_field_has_a_flag_or_a_reason_and_no_flag_names_a_missing_field():
    import dataclasses

    for command, flag_sets in _settings_flags().items():
        for flags in flag_sets:
            fields = {f.name for f in dataclasses.fields(flags.settings)}
            name = f"{command}: {flags.settings.__name__}"
            assert set(flags.helps) | set(flags.without_flag) == fields, name  # a new field needs a flag or a reason
            assert not set(flags.helps) & set(flags.without_flag), name


def test_each_settings_flag_is_on_its_commands_parser():
    subparsers = _subparsers()
    for command, flag_sets in _settings_flags().items():
        dests = {opt: a.dest for a in subparsers[command]._actions for opt in a.option_strings}
        for flags in flag_sets:
            for name in flags.helps:
                assert dests.get(flags.flag(name)) == flags.dest(name), (command, name)


def test_adaptive_flags_are_exactly_the_adaptive_settings_fields():
    import dataclasses

    from gemini_core.adaptive.settings import AdaptiveSettings
    from gemini_core.cli.train import ADAPTIVE_FLAGS

    group = next(g for g in _subparsers()["train"]._action_groups if g.title.startswith("adaptive training"))
    flags = {opt for a in group._group_actions for opt in a.option_strings} - {"--adaptive", "--init", "--nproc"}
    fields = {f.name for f in dataclasses.fields(AdaptiveSettings)}
    assert {flag[2:].replace("-", "_") for flag in flags} <= fields  # no flag names a missing field
    assert flags == {ADAPTIVE_FLAGS.flag(name) for name in ADAPTIVE_FLAGS.helps}


def test_adaptive_flags_reach_the_settings():
    from gemini_core.cli import build_parser
    from gemini_core.cli.train import adaptive_settings
    from gemini_core.scenarios import get_scenario

    args = build_parser().parse_args(["train", "--adaptive", "--epochs", "5", "--lr-policy", "one-cycle",
                                      "--target-ratio", "0.3", "--qat-bits", "4", "--tolerance", "0.02"])
    settings = adaptive_settings(args, get_scenario("digits"))
    assert (settings.epochs, settings.lr_policy, settings.target_ratio, settings.qat_bits, settings.tolerance) == \
        (5, "one-cycle", 0.3, 4, 0.02)
    assert settings.mask == "none" and settings.guard == "rollback"  # flags left out keep the field defaults
