"""The recommender as a kind: each compression technique on a tiny log (bytes drop as expected, int8 stays close
to float, the packed file rebuilds the model exactly), the grid, a sweep through the shared loop into a store
(re-run reuses the points), the CLI sweep (one JSON line per point), export and evaluate (figures and the
standalone scorer reproduce), retime and the per-table sensitivity.

Tiny on purpose (2 shared cores): 50 users x 84 items with 20 negatives for the techniques, a 50 x 120 CSV for
the scenario (the scenario samples 99 negatives per user), width 8, a few epochs.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_bytes

from gemini_core.errors import CheckpointError, ConfigError, GeminiError
from gemini_core.kinds.recommend import metrics
from gemini_core.kinds.recommend.compress import RecommendPointConfig, compress_recommender
from gemini_core.kinds.recommend.data import demo_log, implicit, leave_last_out
from gemini_core.kinds.recommend.measure import RecommendMeasureSettings, measure_recommend_point
from gemini_core.kinds.recommend.points import RecommendSweepSpec
from gemini_core.kinds.recommend.stored import byte_counts, layout, rebuild, serialize
from gemini_core.kinds.recommend.tables import bytes_per_row, pack_codes, quantize_rows, unpack_codes
from gemini_core.kinds.recommend.train import RecommendTrainSettings, train_recommender

REPO = Path(__file__).resolve().parents[2]
FAST = RecommendMeasureSettings(repeats=3, warmup=1, batch_users=4)
TRAIN = RecommendTrainSettings(model="mf", loss="bpr", dim=8, epochs=12, patience=0, lr=0.05)  # with item biases
TOWERS = RecommendTrainSettings(model="two-tower", dim=8, hidden=16, epochs=6, patience=0, lr=0.02)


@pytest.fixture(scope="module")
def split():
    return leave_last_out(implicit(demo_log(0, users=50, items_per_cluster=14)), seed=0, negatives=20)


@pytest.fixture(scope="module")
def mf(split):
    return train_recommender(split, TRAIN).model


@pytest.fixture(scope="module")
def two_tower(split):
    return train_recommender(split, TOWERS).model


def _ndcg(model, split) -> float:
    return metrics.evaluate(model, split, "test", full=False)["ndcg_at_10"]


def _reloads_exactly(model) -> None:
    again = rebuild(json.loads(json.dumps(layout(model))), load_bytes(serialize(model)))
    items = torch.arange(model.n_items)
    with torch.no_grad():
        for user in (0, 7, model.n_users - 1):
            assert torch.equal(model.score_candidates(user, items), again.score_candidates(user, items))


# -- the techniques -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_codes_pack_into_fewer_bytes_and_unpack_exactly(bits):
    codes = torch.randint(0, 1 << bits, (5, 11), dtype=torch.uint8)  # an odd width: rows padded to whole bytes
    packed = pack_codes(codes, bits)
    assert packed.shape == (5, bytes_per_row(11, bits)) == (5, math.ceil(11 * bits / 8))
    assert torch.equal(unpack_codes(packed, bits, 11), codes)
    weight = torch.randn(6, 11)
    packed, scale, offset = quantize_rows(weight, bits)
    assert scale.dtype == offset.dtype == torch.float16
    restored = unpack_codes(packed, bits, 11).float() * scale.float()[:, None] + offset.float()[:, None]
    # each row on its own min-max grid: within half a step (plus the float16 rounding of the offset)
    assert bool(((restored - weight).abs() <= scale.float()[:, None] * 0.5 + 1e-3 * weight.abs().max()).all())


def test_row_wise_bits_drop_the_bytes_as_stored_and_int8_stays_close(split, mf):
    float_ndcg = _ndcg(mf, split)
    assert float_ndcg > 0.3  # the tiny model learned (a random ranking of 21 items gives about 0.2)
    users, items, dim = mf.n_users, mf.n_items, mf.dim
    bias = items * 4  # matrix factorization's item biases stay float32
    previous = None
    for bits in (32, 8, 4, 2):
        model, _ = compress_recommender(mf, RecommendPointConfig(embedding_bits=bits), split, TRAIN)
        row = dim * 4 if bits == 32 else bytes_per_row(dim, bits) + 4  # codes + float16 scale and offset
        assert byte_counts(model)["embedding_bytes"] == (users + items) * row + bias
        size = len(serialize(model))
        assert previous is None or size < previous
        previous = size
        _reloads_exactly(model)
        if bits == 8:
            assert abs(_ndcg(model, split) - float_ndcg) < 0.02


def test_hot_rows_keep_8_bits_and_cost_between_4_and_8(split, mf):
    sizes = {}
    for config in (RecommendPointConfig(embedding_bits=8), RecommendPointConfig(embedding_bits=4),
                   RecommendPointConfig(embedding_bits=4, hot_share=0.25)):
        model, _ = compress_recommender(mf, config, split, TRAIN)
        sizes[config.label()] = byte_counts(model)["embedding_bytes"]
        if config.hot_share:
            table = model.item_embedding.parts["rows"].describe()
            assert table["hot_bits"] == 8 and table["hot_rows"] == math.ceil(0.25 * mf.n_items)
            counts = np.bincount(split.train_items, minlength=split.n_items)
            hot = model.item_embedding.parts["rows"]._is_hot.numpy()
            assert counts[hot].min() >= counts[~hot].max()  # the most-interacted items are the hot ones
            _reloads_exactly(model)
    assert sizes["int4 rows"] < sizes["int4 rows, hot 25% int8"] < sizes["int8 rows"]


def test_rare_rows_share_one_fallback_row(split, mf):
    config = RecommendPointConfig(row_prune_ratio=0.5, recovery_steps=3, embedding_bits=8)
    model, notes = compress_recommender(mf, config, split, TRAIN)
    table = model.user_embedding
    kept = int(table._index.lt(table.parts["rows"].n - 1).sum())
    assert kept == mf.n_users - mf.n_users // 2 and table.parts["rows"].n == kept + 1
    counts = np.diff(split.train_offsets)
    pruned = (table._index == kept).numpy()
    assert counts[pruned].max() <= counts[~pruned].min()  # the rarest users lost their own row
    vectors = table(torch.as_tensor(np.flatnonzero(pruned)))
    assert torch.equal(vectors, vectors[:1].expand_as(vectors))  # one fallback row for all of them
    assert notes["recovery"]["steps"] == 3 and notes["user_embedding"]["pruned_ids"] == mf.n_users // 2
    assert byte_counts(model)["embedding_bytes"] < byte_counts(
        compress_recommender(mf, RecommendPointConfig(embedding_bits=8), split, TRAIN)[0])["embedding_bytes"]
    _reloads_exactly(model)


def test_dimension_pruning_drops_the_least_energy_dims_of_both_tables(split, mf):
    model, notes = compress_recommender(mf, RecommendPointConfig(dim_prune_ratio=0.25), split, TRAIN)
    assert notes["dims"] == {"dims_kept": 6, "dims_before": 8}
    assert model.user_embedding.embedding_dim == model.item_embedding.embedding_dim == 6
    energy = mf.user_embedding.weight.norm(dim=0) * mf.item_embedding.weight.norm(dim=0)
    kept = torch.sort(torch.topk(energy, 6).indices).values
    assert torch.equal(model.user_embedding.weight, mf.user_embedding.weight[:, kept].detach())
    _reloads_exactly(model)


def test_low_rank_and_quotient_remainder_tables_have_fewer_values(split, mf):
    low, notes = compress_recommender(mf, RecommendPointConfig(rank=3, embedding_bits=8), split, TRAIN)
    assert low.item_embedding.parts["a"].dim == 3 and tuple(low.item_embedding.factor.shape) == (3, 8)
    assert 0 < notes["item_embedding"]["energy_kept"] < 1
    qr, notes = compress_recommender(mf, RecommendPointConfig(qr_divisor=4, recovery_steps=2), split, TRAIN)
    assert qr.item_embedding.parts["q"].n == math.ceil(mf.n_items / 4) and qr.item_embedding.parts["r"].n == 4
    assert notes["item_embedding"]["fit_relative_error"] < 1.0
    float_bytes = byte_counts(mf)["embedding_bytes"]
    assert byte_counts(low)["embedding_bytes"] < float_bytes and byte_counts(qr)["embedding_bytes"] < float_bytes / 2
    for model in (low, qr):
        _reloads_exactly(model)
    with pytest.raises(ConfigError, match="not below the embedding width"):
        compress_recommender(mf, RecommendPointConfig(rank=8), split, TRAIN)


def test_towers_are_pruned_with_torch_pruning_and_keep_their_output_width(split, two_tower):
    config = RecommendPointConfig(tower_prune_ratio=0.5, recovery_steps=3, embedding_bits=4)
    model, notes = compress_recommender(two_tower, config, split, TOWERS)
    assert notes["towers"]["hidden"] == [8, 8] and notes["towers"]["params_after"] < notes["towers"]["params_before"]
    assert model.user_tower[-1].out_features == model.item_tower[-1].out_features == 8
    assert len(serialize(model)) < len(serialize(two_tower))
    _reloads_exactly(model)
    with pytest.raises(ConfigError, match="has no towers"):
        compress_recommender(train_recommender(split, RecommendTrainSettings(model="mf", dim=8, epochs=1)).model,
                             RecommendPointConfig(tower_prune_ratio=0.5), split, TRAIN)


def test_a_point_is_measured_with_the_kinds_fields(split, mf):
    model, _ = compress_recommender(mf, RecommendPointConfig(embedding_bits=4), split, TRAIN)
    record = measure_recommend_point(model, split, FAST)
    assert record["kind"] == "recommend" and record["quality_metric"] == "ndcg@10"
    assert record["size_bytes"] == len(serialize(model)) and record["candidates_timed"] == 1000
    assert len(record["user_ndcg_at_10"]) == record["users_n"] == split.test_users.size
    assert 0 < record["score_100_ms_p50"] and 0 < record["latency_ms_p10"] <= record["latency_ms_p50"] \
        <= record["latency_ms_p90"]
    assert record["throughput_users_per_s"] > 0 and record["peak_memory_bytes"] > 0
    assert math.isfinite(record["recall_at_20"])


# -- the point and the grid ---------------------------------------------------------------------------------
def test_point_configs_are_checked_named_and_stored():
    config = RecommendPointConfig(row_prune_ratio=0.5, recovery_steps=20, embedding_bits=4, hot_share=0.1)
    assert RecommendPointConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.label() == "rare rows pruned 50% · ft20 · int4 rows, hot 10% int8"
    assert config.structure() == RecommendPointConfig(row_prune_ratio=0.5, recovery_steps=20)
    assert RecommendPointConfig().is_reference and RecommendPointConfig(recovery_steps=5).is_control
    assert len({RecommendPointConfig(embedding_bits=b).key() for b in (32, 8, 4, 2)}) == 4
    for bad, match in (({"embedding_bits": 6}, "embedding bits 6"), ({"hot_share": 0.2}, "choose 4 or 2"),
                       ({"row_prune_ratio": 0.99}, "row prune ratio"), ({"qr_divisor": 1}, "at least 2"),
                       ({"rank": 4, "qr_divisor": 4}, "one of them"), ({"rank": True}, "whole number"),
                       ({"hot_share": "0.1"}, "hot share '0.1' is not a number"),
                       ({"recovery_steps": 10 ** 6}, r"recovery steps 1000000 is outside \[0, 100000\]"),
                       ({"nope": 1}, "unknown recommender point setting")):
        with pytest.raises(ConfigError, match=match):
            RecommendPointConfig.from_dict(bad)
    assert RecommendPointConfig(embedding_bits=4.0).embedding_bits == 4  # a whole float is taken as the number


def test_measure_settings_are_checked_by_their_annotations():
    assert RecommendMeasureSettings(repeats=5.0).repeats == 5
    for bad, match in (({"repeats": 0}, "measurement repeats 0 must be a whole number of at least 1"),
                       ({"full_ranking": 1}, "full ranking must be true or false"),
                       ({"warmup": True}, "measurement warmup True must be a whole number"),
                       ({"batch_users": 2.5}, "whole number")):
        with pytest.raises(ConfigError, match=match):
            RecommendMeasureSettings(**bad)


def test_the_grid_puts_the_reference_first_and_gives_every_structure_one_budget():
    spec = RecommendSweepSpec(bits=(8, 4), hot_shares=(0.2,), row_prune_ratios=(0.5,), tower_prune_ratios=(0.5,),
                              recovery_steps=7)
    points = spec.points()
    assert points[0].is_reference and points[0] == RecommendPointConfig()
    assert [u.structure.label() for u in spec.units()] == [
        "float32 (reference)", "ft7 · float32 (control)", "rare rows pruned 50% · ft7 · float32",
        "towers pruned 50% · ft7 · float32"]
    assert spec.n_points() == 4 + 1 + 4 + 4  # float, int8, int4, int4 with hot rows; the control in float
    assert all(p.recovery_steps == 7 for p in points if p.structural)
    data = spec.to_dict()
    assert data["kind"] == "recommend" and RecommendSweepSpec.from_dict(json.loads(json.dumps(data))) == spec
    assert RecommendSweepSpec.from_strings(bits="8", row_prune_ratios="0.5", recovery_steps="7").n_points() == 5
    with pytest.raises(ConfigError, match="ranks: 'x'"):
        RecommendSweepSpec.from_strings(ranks="4,x")
    with pytest.raises(ConfigError, match="unknown recommender sweep setting"):
        RecommendSweepSpec.from_dict({"bitz": [8]})


# -- through the shared doors -----------------------------------------------------------------------------
def write_log(path: Path, users: int = 50, items: int = 120, seed: int = 0) -> Path:
    """A tiny clustered click log with times (enough items for the scenario's 99 negatives per user)."""
    rng = np.random.default_rng(seed)
    rows = ["user,item,time"]
    for user in range(users):
        own = np.flatnonzero(np.arange(items) % 4 == user % 4)
        picked = rng.choice(own, size=int(rng.integers(6, 14)), replace=False)
        rows += [f"u{user},i{item},{1000 + 10 * t + user}" for t, item in enumerate(picked)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


SCENARIO_OPTIONS = {"user_column": "user", "item_column": "item", "time_column": "time"}
SWEEP_TRAIN = RecommendTrainSettings(model="mf", dim=8, epochs=8, patience=0, lr=0.05)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """(store, run id, records, scenario) of one tiny sweep through ``workflows.sweep.run_sweep``."""
    from gemini_core.results.store import Store
    from gemini_core.scenarios import get_scenario
    from gemini_core.workflows.sweep import run_sweep

    folder = tmp_path_factory.mktemp("recommend")
    scenario = get_scenario("recommend", data=str(write_log(folder / "log.csv")), **SCENARIO_OPTIONS)
    spec = RecommendSweepSpec(bits=(8, 4), hot_shares=(0.25,), row_prune_ratios=(0.5,), recovery_steps=4,
                              train=SWEEP_TRAIN, measure=FAST)
    store = Store(folder / "store.sqlite")
    records = list(run_sweep(scenario, spec, store))
    return store, records[0]["run_id"], records, scenario, spec, folder


def test_a_sweep_stores_every_point_and_a_rerun_reuses_them(swept):
    from gemini_core.results.record import PointRecord
    from gemini_core.results.table import points_frame
    from gemini_core.workflows.sweep import run_sweep

    store, run_id, records, scenario, spec, _ = swept
    assert [r["label"] for r in records] == [c.label() for c in spec.points()]
    assert all(r["status"] == "ok" and r["kind"] == "recommend" for r in records), [r.get("error") for r in records]
    assert store.get_run(run_id)["status"] == "finished" and len(store.points(run_id)) == spec.n_points()
    for record in records:
        PointRecord.validate_dict(record)
    assert records[0]["ndcg@10_delta"] == 0.0  # the reference against itself, user by user
    frame = points_frame(store.points(run_id))
    assert int(frame["is_reference"].sum()) == 1 and int(frame["is_control"].sum()) == 1
    assert frame.loc[frame["is_reference"], "compression"].item() == 1.0
    assert (frame.loc[~frame["is_reference"] & ~frame["is_control"], "compression"] > 1).all()
    again = list(run_sweep(scenario, spec, store))
    assert len(again) == spec.n_points() and all(r["reused"] for r in again)


def test_the_cli_sweep_prints_one_json_line_per_point(swept):
    _, run_id, records, _, spec, folder = swept
    args = [sys.executable, "-m", "gemini_core", "sweep", "--scenario", "recommend", "--data",
            str(folder / "log.csv"), "--user-column", "user", "--item-column", "item", "--time-column", "time",
            "--rec-bits", "8,4", "--rec-hot-share", "0.25", "--rec-rows", "0.5", "--rec-recovery-steps", "4",
            "--rec-dim", "8", "--epochs", "8", "--train-patience", "0", "--lr", "0.05", "--rec-repeats", "3"]
    out = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == spec.n_points() and {line["kind"] for line in lines} == {"recommend"}
    assert "recommend sweep:" in out.stderr


def test_the_sweep_flags_are_read_by_this_kind_and_refused_by_the_others():
    from gemini_core.cli import build_parser
    from gemini_core.cli.sweep import run
    from gemini_core.kinds.recommend import flags

    parser = build_parser()
    args = parser.parse_args(["sweep", "--scenario", "recommend", "--rec-bits", "8,2", "--rec-qr", "4",
                              "--rec-model", "two-tower", "--rec-tower", "0.5", "--epochs", "3", "--lr", "0.05"])
    spec = flags.spec_from(args)
    assert spec.bits == (32, 8, 2) and spec.qr_divisors == (4,) and spec.tower_prune_ratios == (0.5,)
    assert (spec.train.model, spec.train.epochs, spec.train.lr) == ("two-tower", 3, 0.05)
    with pytest.raises(GeminiError, match="--rec-bits: recommender flags; use them with --scenario recommend"):
        run(parser.parse_args(["sweep", "--scenario", "digits", "--rec-bits", "8"]))
    with pytest.raises(GeminiError, match="LLM flags"):
        run(parser.parse_args(["sweep", "--scenario", "recommend", "--quant", "rtn"]))


def test_export_and_evaluate_reproduce_the_figures_and_the_standalone_scorer(swept, tmp_path):
    from gemini_core.checkpoint.format import read_recipe
    from gemini_core.kinds.recommend import scorer
    from gemini_core.workflows.export import evaluate_export, evaluate_warnings, export_point, export_summary

    store, run_id, records, _, _, folder = swept
    point = next(r for r in records if r["label"] == "rare rows pruned 50% · ft4 · int4 rows, hot 25% int8")
    path = export_point(store, point["point_id"], tmp_path / "export")
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "ids.json", "model.safetensors", "recipe.json",
                                                      "score.py"]
    recipe = read_recipe(path)
    assert recipe["kind"] == "recommend" and recipe["recommend"]["config"] == point["config"]
    assert (path / "model.safetensors").stat().st_size == point["size_bytes"]
    summary = export_summary(path)
    assert summary["ndcg_at_10"] == summary["sweep_ndcg_at_10"] == point["ndcg_at_10"]
    with pytest.raises(GeminiError, match="give that file with --data"):
        evaluate_export(path)
    check = evaluate_export(path, data_overrides={"data": str(folder / "log.csv")})
    assert check["ndcg_matches_record"] and check["figures_match_record"] and check["size_matches_record"]
    assert check["weights_match_record"] and check["layout_in_file_matches"] and check["data_fingerprint_matches"]
    assert check["scorer_matches"] and evaluate_warnings(check) == []
    # the shipped score.py, run as a program with numpy and safetensors only
    out = subprocess.run([sys.executable, str(path / "score.py"), str(path), "--user", "3", "--items", "0,5,7"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-1000:]
    shipped = [s["score"] for s in json.loads(out.stdout)["scores"]]
    model = rebuild(recipe["recommend"]["layout"], load_bytes((path / "model.safetensors").read_bytes()))
    with torch.no_grad():
        assert np.allclose(shipped, model.score_candidates(3, torch.tensor([0, 5, 7])).numpy(), rtol=1e-5, atol=1e-6)
    top = scorer.Scorer.load(path).top(3, 5)
    assert len(top) == 5 and top[0][1] >= top[-1][1]
    # a changed file is refused before anything is built from it
    blob = bytearray((path / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        evaluate_export(path, data_overrides={"data": str(folder / "log.csv")})


def test_retime_times_every_point_again_together(swept):
    from gemini_core.workflows.retime import retime_run

    store, run_id, records, _, _, _ = swept
    updated = retime_run(store, run_id, rounds=1)
    assert len(updated) == len(records)
    assert all(u["previous_latency"]["latency_ms_p50"] is not None and u["latency_ms_p50"] > 0 for u in updated)
    assert {u["ndcg_at_10"] for u in updated} == {r["ndcg_at_10"] for r in records}  # quality is not re-measured


def test_sensitivity_quantizes_one_table_at_a_time(swept):
    from gemini_core.kinds.recommend import flags
    from gemini_core.kinds.recommend.sensitivity import RecommendSensitivityParams
    from gemini_core.workflows.sensitivity import params_from_dict, run_analysis

    store, _, _, scenario, _, _ = swept
    params = RecommendSensitivityParams(bits=(4, 2), train=SWEEP_TRAIN)
    profile = run_analysis(scenario, params, store)
    assert profile.status == "complete" and [e["layer"] for e in profile.quantization] == ["user_embedding",
                                                                                           "item_embedding"]
    assert all(len(e["results"]) == 2 for e in profile.quantization)
    assert params_from_dict("recommend", profile.params) == params
    rows, advice = flags.profile_rows(profile)
    assert len(rows) == 2 and "drop@2b" in rows[0] and "keep at higher precision" in advice
    assert run_analysis(scenario, params, store).analysis_id == profile.analysis_id  # stored, read back
