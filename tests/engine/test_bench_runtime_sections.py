"""The bench's precision and headline sections include the runtimes, a peer column and the CPU flags."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bench import headline
from bench import runtimes as runtime_bench

VNNI = {"cpu": "Test CPU", "cpu_flags": ["avx2", "avx512_vnni"], "int8_dot_product": True}
AVX2 = {"cpu": "Test CPU", "cpu_flags": ["avx2"], "int8_dot_product": False}


def _row(variant, recipe, precision, speedup, delta=0.0):
    return {"variant": variant, "recipe": recipe, "precision": precision, "speedup_vs_torch_fp32": speedup,
            "accuracy_delta_pts": delta}


ROWS = [_row("torch fp32", "product", "fp32", 1.0), _row("openvino int8 (NNCF)", "product", "int8", 3.1),
        _row("onnxruntime int8", "product", "int8", 5.0, delta=-2.0),  # faster but outside 1 point
        _row("openvino bf16", "product", "bf16", 3.4), _row("openvino int8 peer", "peer", "int8-peer", 3.0)]


def test_int8_goal_depends_on_the_cpu_flags():
    goal = runtime_bench.int8_target(ROWS, VNNI)
    assert "VNNI" in goal["goal"] and goal["met"] and goal["value"] == 3.1  # the lossy 5x row does not count
    assert not runtime_bench.int8_target([*ROWS[:1], _row("ov int8", "product", "int8", 2.0)], VNNI)["met"]
    avx2 = runtime_bench.int8_target(ROWS, AVX2)  # AVX2 only: the best product row against the fastest peer
    assert "peer" in avx2["goal"] and avx2["met"] and avx2["value"] == pytest.approx(3.4 / 3.0)


class _Scale(nn.Module):
    def __init__(self, repeat: int):
        super().__init__()
        self.repeat = repeat

    def forward(self, x):
        for _ in range(self.repeat):
            x = x @ torch.eye(64)
        return x


def test_headline_rows_count_the_runtime_file_and_compare_with_the_fastest_peer():
    from bench.common import make_context

    ctx = make_context(tiny=True)

    class Scenario:
        class splits:
            class test:
                @staticmethod
                def first(n):
                    return type("B", (), {"inputs": {"x": torch.randn(8, 64)}})()

    def rec(label, acc, size, bits=32, method="none", execution="dense", runtime_file=None, peer=False):
        return {"label": label, "accuracy": acc, "size_bytes": size, "backend": "t", "peer": peer,
                "config": {"bits": bits, "prune_method": method, "execution": execution},
                "runtime": {"size_bytes": runtime_file} if runtime_file else None, "macs": 1}

    records = [rec("fp32", 0.98, 8000), rec("ov int4", 0.975, 1000, bits=4, execution="openvino-int4",
                                             runtime_file=1200),
               rec("peer int8", 0.98, 2000, peer=True), rec("lossy", 0.90, 500, bits=2)]
    models = {"fp32": _Scale(40), "ov int4": _Scale(2), "peer int8": _Scale(10), "lossy": _Scale(1)}
    out = headline._evaluate(ctx, Scenario, records, models)
    rows = {r["label"]: r for r in out["rows"]}
    assert rows["ov int4"]["smaller"] == pytest.approx(8000 / 1200)  # the shipped runtime file, not the storage
    assert out["best_peer"]["label"] == "peer int8" and out["best_speed"]["label"] == "ov int4"
    assert rows["ov int4"]["vs_best_peer"] > 1 and rows["peer int8"]["vs_best_peer"] is None
    assert out["best_size"]["label"] == "ov int4"  # "lossy" is smaller but loses 8 points; peers never count


@pytest.mark.slow
def test_precision_section_has_runtime_rows_with_peers_and_cpu(tmp_path):
    from bench import precision
    from bench.common import make_context

    result = precision.run(ctx=make_context(tiny=True, out_dir=tmp_path))
    section = result["runtimes"]
    assert section["cpu"]["cpu"] and "cpu_flags" in section["cpu"]
    recipes = {r["recipe"] for r in section["rows"]}
    assert recipes == {"product", "peer"} or section["skipped"]
    titles = [t["title"] for t in result["tables"]]
    assert any(t.startswith("Runtimes and their peers") for t in titles)
    assert any(t["target"] == "int8 on a runtime" for t in result["targets"])


def test_the_benchmarks_page_has_a_column_per_cpu_kind_with_the_peers_beside_the_product():
    from bench.report import cpu_kinds_section

    def report(cap, speedups):
        return {"isa_cap": cap, "threads": 1, "date": "2026-12-07T14:00:00+00:00", "cpu": {"cpu": "EPYC", "cpu_flags": ["avx2", "avx512f", "avx512_vnni"]},
                "isa_restriction": {"torch_cpu_capability": "AVX2" if cap else "AVX512", "onednn_capped": cap and "AVX2"},
                "rows": [{"variant": v, "recipe": r, "speedup_vs_torch_fp32": x, "accuracy_delta_pts": 0.0}
                         for v, r, x in speedups]}

    lines = cpu_kinds_section([report("avx2", [("openvino fp32", "product", 1.1), ("openvino fp32 peer", "peer", 1.0)]),
                               report(None, [("openvino fp32", "product", 1.2), ("openvino fp32 peer", "peer", 2.4)])])
    text = "\n".join(lines)
    assert "| variant | recipe | AVX2-restricted, 1 thread(s), 2026-12-07 14:00 | native AVX-512 VNNI, 1 thread(s)" in text
    assert "| openvino fp32 peer | peer | 1.00x (+0.0) | 2.40x (+0.0) |" in text
    assert "torch capability AVX2, oneDNN cap AVX2" in text and cpu_kinds_section([]) == []


def test_the_points_section_judges_each_run_by_its_own_goal_and_the_shipped_size():
    from bench.report import points_section

    def report(cap, rows, ref_ms=(400.0, 400.0, 400.0)):
        ref_ms = list(ref_ms)
        return {"isa_cap": cap, "threads": 2, "date": "2026-12-07T17:00:00+00:00",
                "cpu": {"cpu": "EPYC", "cpu_flags": ["avx2", "avx512f", "avx512_vnni"]},
                "text_model": {"train": 2000, "test": 750, "data": "sst2", "baseline_test_accuracy": 0.85},
                "rows": [{"variant": "torch fp32", "recipe": "product", "speedup_vs_torch_fp32": 1.0,
                          "accuracy_delta_pts": 0.0, "size_ratio_vs_torch_fp32": 1.0, "rounds_ms": ref_ms}]
                + [{"variant": v, "recipe": "point", "speedup_vs_torch_fp32": x, "accuracy_delta_pts": d,
                    "size_ratio_vs_torch_fp32": z, "shipped_bytes": 10_000_000, "runtime_bytes": 50_000_000,
                    "speedup_rounds": [x - 0.1, x, x + 0.1], "rounds_ms": [100.0, 100.0, 100.0]}
                   for v, x, d, z in rows]}

    pruned, small_but_lossy, big = "p50 → dense-int8", "p60 → dense-int8", "p0 → dense-int8"
    lines = points_section([report("avx2", [(pruned, 3.5, -0.6, 8.7), (small_but_lossy, 5.0, -1.5, 9.5),
                                            (big, 4.0, 0.0, 6.7)]),
                            report(None, [(pruned, 5.0, -0.6, 8.7), (small_but_lossy, 7.0, -1.5, 9.5),
                                          (big, 6.5, 0.0, 6.7)])])
    text = "\n".join(lines)
    # AVX2: 3x is the goal, the 8x-smaller point within 1 point reaches it; natively 6x is, and it does not
    # (the faster points are either too lossy or too big)
    assert "AVX2-restricted, 2 thread(s), 2026-12-07 17:00 (goal 3x): **met**, best 3.50x, 8.70x smaller" in text
    assert "native AVX-512 VNNI, 2 thread(s), 2026-12-07 17:00 (goal 6x): **not met**, best 5.00x" in text
    assert f"| {pruned} | 10,000,000 | 8.70x | 50,000,000 | 3.50x (3.40–3.60) (-0.6) | 5.00x (4.90–5.10) (-0.6) |" in text
    assert points_section([report(None, [])]) == []
    # under the AVX2 cap an ONNX Runtime row (MLAS is never capped) cannot be the one that meets the goal
    ort = "\n".join(points_section([report("avx2", [("p50 → onnxruntime:int8-dynamic", 4.0, -0.5, 8.7),
                                                     (pruned, 2.0, -0.6, 8.7)])]))
    assert "(goal 3x): **not met**, best 2.00x" in ort
    # a 6x median carried by stalled fp32 rounds (its fastest round only 4x the point's) is not a met goal
    stalled = "\n".join(points_section([report(None, [(pruned, 6.2, -0.6, 8.7)], ref_ms=(400.0, 2000.0, 900.0))]))
    assert "(goal 6x): **met by the median only**, best 6.20x" in stalled and "fastest rounds 4.00x" in stalled


def test_bench_points_come_with_their_unpruned_control_and_the_embedding_override():
    from bench.runtimes import parse_args, point_configs

    args = parse_args(["--points", "l2-structured:0.4", "--recovery-steps", "80",
                       "--storage", "4:group-32,4:group-32+emb=2:group-32"])
    configs = point_configs(args)
    assert [c[0].prune_ratio for c in configs] == [0.0, 0.4]
    assert all(c.finetune_steps == 80 for group in configs for c in group)  # the control recovers as long
    plain, low = configs[1]
    assert (plain.bits, plain.granularity, plain.layer_overrides) == (4, "group-32", ())
    assert [(o.pattern, o.bits, o.granularity) for o in low.layer_overrides] == [("word_embeddings", 2, "group-32")]
