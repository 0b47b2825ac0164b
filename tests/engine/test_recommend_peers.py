"""Library peers in a recommender sweep: implicit's ALS and TorchRec's int8 tables measured in the same run, on the
same split, by the same code as the product's points; shown by the tables and charts, never shipped, never on the
front, never exported."""
from __future__ import annotations

import pytest

from gemini_core.errors import ConfigError, GeminiError
from gemini_core.kinds.recommend.points import RecommendSweepSpec
from tests.engine.test_recommend_engine import FAST, SCENARIO_OPTIONS, SWEEP_TRAIN, write_log

PEERS = ("implicit-als", "torchrec-int8")
SHARED = ("ndcg_at_10", "ndcg_at_10_ci95", "hr_at_10", "hr_at_10_ci95", "ndcg@10_delta", "ndcg@10_delta_ci95",
          "embedding_bytes", "size_bytes", "latency_ms_p50", "score_100_ms_p50", "throughput_users_per_s",
          "peak_memory_bytes", "user_ndcg_at_10")


@pytest.fixture(scope="module")
def peered(tmp_path_factory):
    """(store, run id, records, scenario, spec) of a tiny sweep with two peers."""
    pytest.importorskip("implicit")
    pytest.importorskip("torchrec")
    from gemini_core.results.store import Store
    from gemini_core.scenarios import get_scenario
    from gemini_core.workflows.sweep import run_sweep

    folder = tmp_path_factory.mktemp("peers")
    scenario = get_scenario("recommend", data=str(write_log(folder / "log.csv")), **SCENARIO_OPTIONS)
    spec = RecommendSweepSpec(bits=(32, 4), train=SWEEP_TRAIN, measure=FAST, peers=PEERS, peer_grid=1,
                              recovery_steps=0)
    store = Store(folder / "store.sqlite")
    records = list(run_sweep(scenario, spec, store))
    return store, records[0]["run_id"], records, scenario, spec


def test_peers_are_records_of_the_run_with_the_shared_figures(peered):
    from gemini_core.results.record import PointRecord

    store, run_id, records, scenario, spec = peered
    assert len(records) == spec.n_points() == 4, [r.get("error") for r in records]
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    product, peers = records[:2], records[2:]
    assert all(r.get("peer") is None for r in product)
    assert [r["peer"] for r in peers] == ["implicit ALS (library)", "TorchRec int8 row-wise (library)"]
    for record in peers:
        PointRecord.validate_dict(record)
        for field in SHARED:
            assert record.get(field) is not None, (record["label"], field)
        assert len(record["user_ndcg_at_10"]) == len(product[0]["user_ndcg_at_10"])  # the same test users
    als, int8 = peers
    assert als["peer_notes"]["settings_tried"] == 1 and "chosen_on_validation" in als["peer_notes"]
    # TorchRec's int8 rows are smaller than the float tables, and score close to the float reference
    assert int8["embedding_bytes"] < product[0]["embedding_bytes"]
    assert abs(int8["ndcg_at_10"] - product[0]["ndcg_at_10"]) < 0.05
    assert int8["size_written"].startswith("not written")


def test_a_rerun_reuses_the_peers_by_their_keys(peered):
    from gemini_core.workflows.sweep import run_sweep

    store, _, records, scenario, spec = peered
    again = list(run_sweep(scenario, spec, store))
    assert len(again) == len(records) and all(r.get("reused") for r in again)
    assert [r.get("peer") for r in again] == [r.get("peer") for r in records]


def test_the_ship_rule_and_the_front_ignore_peers_even_when_a_peer_is_best(peered):
    from gemini_core.results.pareto import pareto_front
    from gemini_core.results.suggest import Constraints, alternatives, recommend, suggest_point
    from gemini_core.results.table import points_frame

    store, run_id, *_ = peered
    points = store.points(run_id)
    peer_id = next(p["point_id"] for p in points if p.get("peer"))
    for p in points:  # make the peer the best at everything: best quality, fastest, smallest
        if p["point_id"] == peer_id:
            p.update(ndcg_at_10=0.99, hr_at_10=1.0, latency_ms_p50=1e-4, size_bytes=1)
            p.pop("ndcg@10_delta", None), p.pop("ndcg@10_delta_ci95", None)
    df = points_frame(points)
    assert not df.loc[df["point_id"] == peer_id, "pareto"].item()
    assert df["pareto"].any()  # the product's points still make a front
    assert pareto_front(points)[[p["point_id"] for p in points].index(peer_id)] is False
    assert not df.loc[df["point_id"] == peer_id, "is_reference"].item()
    for constraints in (None, Constraints(unbounded=True), Constraints(max_latency_ms=1.0)):
        rec = recommend(df, constraints)
        assert rec.point_id is not None and rec.point_id != peer_id
    assert int(suggest_point(df)["point_id"]) != peer_id
    chosen = int(df.loc[df["is_reference"], "point_id"].item())
    assert peer_id not in [int(a["point_id"]) for a in alternatives(df, chosen)]


def test_export_refuses_a_peer_and_retime_times_it_beside_the_points(peered, tmp_path):
    from gemini_core.workflows.export import export_point
    from gemini_core.workflows.retime import retime_run

    store, run_id, records, *_ = peered
    peer = next(r for r in records if r.get("peer"))
    with pytest.raises(GeminiError) as refused:
        export_point(store, peer["point_id"], tmp_path / "out")
    assert "library peer" in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "out").exists()
    # the peers are made again (the implicit fit to the same weights, else retime refuses) and timed in the rounds
    updated = retime_run(store, run_id, rounds=1)
    assert {r["point_id"] for r in updated} == {r["point_id"] for r in records}
    again = {r["point_id"]: r for r in updated}
    for record in records:
        assert again[record["point_id"]]["previous_latency"]["latency_ms_p50"] == record["latency_ms_p50"]
        assert again[record["point_id"]].get("peer") == record.get("peer")


def test_the_tables_charts_and_report_show_peers_marked(peered):
    from gemini_core.charts.sweep import fig_quality_vs_latency, fig_report_front
    from gemini_core.report.peers import peer_table
    from gemini_core.report.summary import build_report_html
    from gemini_core.results.table import points_frame, reference_row, table_frame

    store, run_id, *_ = peered
    df = points_frame(store.points(run_id))
    assert table_frame(df)["library peer (not shippable)"].tolist()[2:] == [
        "implicit ALS (library)", "TorchRec int8 row-wise (library)"]
    for fig in (fig_quality_vs_latency(df), fig_report_front(df, int(reference_row(df)["point_id"]))):
        traces = [t for t in fig.data if t.name == "library peer"]
        assert len(traces) == 1 and len(traces[0].x) == 2 and traces[0].marker.symbol == "x"
        # each name faces into the chart: the peer furthest right is written to its left (it was cut off)
        right = max(range(2), key=lambda i: traces[0].x[i])
        assert traces[0].textposition[right].endswith("left"), traces[0].textposition
        # the peers are drawn once, in their own trace: the product's traces hold the product's two points
        own = [t for t in fig.data if t.name not in ("library peer", "Pareto front", "chosen point")]
        assert sum(len(t.x) for t in own) == 2
    table = peer_table(df)
    assert list(table["model"]) == ["product: reference", "implicit ALS (library)", "TorchRec int8 row-wise (library)"]
    assert all("[" in c for c in table["NDCG@10 (%), 95% interval"])  # each with its interval
    assert table["size"].str.endswith(("B", "KB", "MB")).all()  # units on every figure
    ref = reference_row(df)
    html = build_report_html("r", store.get_run(run_id), ref, ref, df, static_charts=False)
    assert "Library peers (same split, not shippable)" in html and "TorchRec int8 row-wise (library)" in html


def test_unknown_or_missing_peers_are_one_line():
    with pytest.raises(ConfigError) as bad:
        RecommendSweepSpec(peers=("implicit-svd",))
    assert "implicit-svd" in str(bad.value) and "implicit-als" in str(bad.value) and "\n" not in str(bad.value)
    with pytest.raises(ConfigError):
        RecommendSweepSpec.from_strings(peers="implicit-als,lightfm")
    assert RecommendSweepSpec(peers=()).to_dict() == RecommendSweepSpec().to_dict()
    assert "peers" not in RecommendSweepSpec().to_dict()  # a grid without peers keeps its run id


def test_a_missing_library_is_one_line_with_the_install_hint(monkeypatch):
    import builtins

    from gemini_core.kinds.recommend import peer_points

    real = builtins.__import__

    def no_implicit(name, *args, **kwargs):
        if name == "implicit" or name.startswith("implicit."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_implicit)
    with pytest.raises(ConfigError) as missing:
        peer_points.require(["implicit-als"])
    assert "pip install" in str(missing.value) and "\n" not in str(missing.value)


def test_the_cli_flag_reads_peers_and_refuses_unknown_ones():
    from gemini_core.cli import build_parser
    from gemini_core.kinds.recommend import flags

    parser = build_parser()
    args = parser.parse_args(["sweep", "--scenario", "recommend", "--rec-peers", "implicit-als,torchrec-int8",
                              "--rec-peer-grid", "2"])
    spec = flags.spec_from(args)
    assert spec.peers == PEERS and spec.peer_grid == 2
    assert [c.grid for c in spec.peer_configs()] == [2, 0]  # a TorchRec peer converts the baseline: no grid
    assert spec.n_points() == len(spec.points()) + 2
    with pytest.raises(GeminiError):
        flags.spec_from(parser.parse_args(["sweep", "--scenario", "recommend", "--rec-peers", "als"]))
