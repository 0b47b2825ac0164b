"""``python -m bench.recommend``: the recommender beside its library peers on one split, and TorchRec's quantized
embedding recipe for size and speed. Writes bench/results/recommend.json and prints the tables.

Standalone rather than a section of ``python -m bench``: it reads MovieLens from the data folder beside the
checkout (``shared/data/movielens-small``, or ``--data``), needs the optional ``recommend`` extra (TorchRec,
FBGEMM, implicit: requirements-recommend.txt) and launches torchrun for the sharded rows.

1. Quality, all on the same leave-last-out split (per user the last interaction by time is the test item, the
   one before it the validation item; 99 sampled unseen items per user) and measured by the same code
   (``kinds.recommend.metrics.evaluate``): HR@10 and NDCG@10 among the 100, Recall@20 and NDCG@20 over the
   whole catalogue, each with a 95% bootstrap interval over users, and each row's NDCG@10 paired with the
   product's MF row on the same users (the difference and its interval). Rows: most-popular items (the floor
   any model must clear), implicit's ALS and BPR (their settings picked by validation NDCG@10 from a small
   grid), the product's default MF (``train.py``: ALS, early stopping; paired with implicit's ALS on NDCG@10
   and HR@10), the MF trained by BPR (the earlier default), the default's TorchRec int8 and int4 twins,
   and MF trained sharded over 1 and over 2 gloo processes (``kinds.recommend.distributed``: Adagrad fused
   into FBGEMM's CPU kernel; the 2-process run is also paired with the 1-process one on validation).
2. The >= 8x point (``POINT``, the config the sweep builds for ``--rec-dims 0.125 --rec-recovery-steps 10
   --rec-bits 4``) on the default MF: test NDCG@10 paired with the float model, table bytes, and the time to
   score 100 and 1,000 candidates, float and point interleaved.
3. Size and speed of the MF's tables (skipped with ``--no-size-speed``): plain ``nn.Embedding``, TorchRec's float ``EmbeddingBagCollection`` and
   its int8 / int4 row-wise quantized twins (FBGEMM's CPU kernels): stored bytes, and per round (every variant
   once per round, in a rotated order, so a busy machine slows all of them alike) the time to score 1,000
   candidates for one user, to look up 4,096 item rows through the model's module for the table, and the
   collection's kernel alone on a prepared input; medians with quartiles over rounds. The same for a
   synthetic table of ``--large-rows`` rows, where the tables, not Python, decide the time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from gemini_core.kinds.recommend import metrics as rec_metrics
from gemini_core.kinds.recommend import peer_points, peers, torchrec_twin
from gemini_core.kinds.recommend.compress import RecommendPointConfig, compress_recommender
from gemini_core.kinds.recommend.data import implicit, leave_last_out, read_log
from gemini_core.kinds.recommend.models import MatrixFactorization
from gemini_core.kinds.recommend.stored import byte_counts
from gemini_core.kinds.recommend.train import RecommendTrainSettings, train_recommender
from gemini_core.results.stats import paired_mean_difference

from .common import REPO, environment, interleaved_latency, log, make_context, shared_data_dir

OUT = REPO / "bench" / "results" / "recommend.json"
FIGURES = ("hr_at_10", "ndcg_at_10", "recall_at_20", "ndcg_at_20")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.recommend", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="a MovieLens folder with ratings.csv "
                   "(default: movielens-small in the data folder beside the checkout)")
    p.add_argument("--quick", action="store_true", help="fewer epochs, rounds and grid points (a few minutes)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--no-distributed", action="store_true", help="skip the sharded 1- and 2-process rows")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (default 30, quick 10)")
    p.add_argument("--no-size-speed", action="store_true", help="skip the TorchRec tables' size and speed")
    p.add_argument("--large-rows", type=int, default=500_000, help="rows of the synthetic table (0: skip it)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for timing and training (default 1)")
    return p.parse_args(argv)


# -- quality -----------------------------------------------------------------------------------------------------
def popularity(split) -> MatrixFactorization:
    """Most-popular items as a one-wide MF: every user's vector is 1, an item's is its training count plus a
    seeded random fraction below 1/2 (items of equal count in a random order, not all tied: the metrics count a
    tie against the held-out item), so every user gets the same ranking by popularity."""
    model = MatrixFactorization(split.n_users, split.n_items, dim=1, biases=False)
    counts = torch.bincount(torch.as_tensor(split.train_items), minlength=split.n_items).float()
    jitter = 0.5 * torch.rand(split.n_items, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.user_embedding.weight.fill_(1.0)
        model.item_embedding.weight.copy_((counts + jitter).unsqueeze(1))
    return model.eval()


def quality_row(name: str, record: dict, seconds: float | None, reference: dict | None, notes: str = "",
                extra: dict | None = None) -> dict:
    row = {"name": name, "seconds": seconds, "notes": notes, **(extra or {})}
    for figure in FIGURES:
        row[figure] = record.get(figure)
        row[f"{figure}_ci95"] = record.get(f"{figure}_ci95")
    if reference is not None:
        paired = paired_mean_difference(record["user_ndcg_at_10"], reference["user_ndcg_at_10"])
        row["ndcg_at_10_vs_mf"] = paired["delta"]
        row["ndcg_at_10_vs_mf_ci95"] = paired["delta_ci95"]
    return row


def run_sharded(data: Path, nproc: int, epochs: int, threads: int) -> dict | None:
    """One ``kinds.recommend.distributed`` run (its own torchrun); its JSON record, or None if it failed."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run.json"
        command = [sys.executable, "-m", "gemini_core.kinds.recommend.distributed", "--nproc", str(nproc),
                   "--data", str(data), "--epochs", str(epochs), "--out", str(out)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        begin = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            log(f"sharded run on {nproc} process(es) failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
            return None
        record = json.loads(out.read_text())
        record["wall_seconds"] = time.perf_counter() - begin
        record["command"] = " ".join(["python"] + command[1:])
        return record


def quality(split, data: Path, quick: bool, distributed: bool, threads: int) -> tuple[list[dict], dict]:
    rows, models = [], {}
    settings = RecommendTrainSettings(threads=threads, epochs=10 if quick else 40)
    log(f"training the product's default MF ({settings.objective}, dim {settings.dim}; early stopping)")
    trained = train_recommender(split, settings)
    mf_record = rec_metrics.evaluate(trained.model, split, "test")
    models["mf"], models["mf_settings"] = trained.model, settings
    rows.append(quality_row("popularity (most-popular items)", rec_metrics.evaluate(popularity(split), split, "test"),
                            0.0, mf_record, "the floor: one ranking for every user"))
    peer_records = {}
    for peer in peers.PEERS:
        grid = 2 if quick else len(peers.GRIDS[peer])
        log(f"tuning implicit's {peer.upper()} on validation ({grid} settings)")
        model, notes = peer_points.tuned_implicit(split, peer, grid)  # as a sweep's --rec-peers tunes it
        peer_records[peer] = rec_metrics.evaluate(model, split, "test")
        rows.append(quality_row(f"implicit {peer.upper()}", peer_records[peer], notes["fit_seconds"], mf_record,
                                f"chosen by validation NDCG@10: {notes['chosen_on_validation']}",
                                {"val_ndcg_at_10": notes["val_ndcg_at_10"], "tried": notes["tried"]}))
    rows.append(quality_row("MF, product default (train.py: ALS)", mf_record, trained.seconds, mf_record,
                            f"epoch {trained.best_epoch} of {settings.epochs} (stopped: {trained.stopped})",
                            {"settings": settings.to_dict(), "val_ndcg_at_10": trained.val_ndcg_at_10}))
    bpr = RecommendTrainSettings(loss="bpr", dim=32, threads=threads, epochs=10 if quick else 40)
    log("training the MF with BPR (the earlier default: dim 32, Adam)")
    bpr_trained = train_recommender(split, bpr)
    rows.append(quality_row("MF, BPR (train.py: BPR, Adam, dim 32)", rec_metrics.evaluate(bpr_trained.model, split),
                            bpr_trained.seconds, mf_record,
                            f"epoch {bpr_trained.best_epoch} of {bpr.epochs} (stopped: {bpr_trained.stopped})",
                            {"settings": bpr.to_dict(), "val_ndcg_at_10": bpr_trained.val_ndcg_at_10}))
    versus_als(rows, mf_record, peer_records.get("als"))
    for precision in ("int8", "int4"):
        twin = torchrec_twin.twin(trained.model, precision)
        rows.append(quality_row(f"MF, TorchRec {precision} twin", rec_metrics.evaluate(twin, split, "test"), None,
                                mf_record, "row-wise " + precision + " tables, FBGEMM CPU"))
    sharded = {}
    if distributed:
        for nproc in (1, 2):
            log(f"MF sharded over {nproc} gloo process(es) (torchrun; table-wise, fused Adagrad)")
            record = run_sharded(data, nproc, 8 if quick else 30, threads)
            if record is None:
                continue
            sharded[nproc] = record
            test = dict(record["test"])
            # the per-user test values are not in the record; pair on validation below instead
            rows.append(quality_row(f"MF sharded, {nproc} process{'es' if nproc > 1 else ''} (gloo)", test,
                                    record["seconds"], None,
                                    f"epoch {record['best_epoch']}, {record['steps']} steps; validation NDCG@10 "
                                    f"{100 * record['val']['ndcg_at_10']:.2f}%",
                                    {"val_ndcg_at_10": record["val"]["ndcg_at_10"],
                                     "val_ndcg_at_10_ci95": record["val"]["ndcg_at_10_ci95"],
                                     "command": record["command"], "weights_digest": record["weights_digest"]}))
    comparison = None
    if 1 in sharded and 2 in sharded:
        paired = paired_mean_difference(sharded[2]["val_user_ndcg_at_10"], sharded[1]["val_user_ndcg_at_10"])
        comparison = {"val_ndcg_at_10_1proc": sharded[1]["val"]["ndcg_at_10"],
                      "val_ndcg_at_10_1proc_ci95": sharded[1]["val"]["ndcg_at_10_ci95"],
                      "val_ndcg_at_10_2proc": sharded[2]["val"]["ndcg_at_10"],
                      "val_ndcg_at_10_2proc_ci95": sharded[2]["val"]["ndcg_at_10_ci95"],
                      "paired_delta_2_minus_1": paired["delta"], "paired_delta_ci95": paired["delta_ci95"],
                      "best_epochs": [sharded[1]["best_epoch"], sharded[2]["best_epoch"]],
                      "seconds": [sharded[1]["seconds"], sharded[2]["seconds"]]}
    return rows, {"models": models, "sharded_comparison": comparison}


def versus_als(rows: list[dict], mf_record: dict, als_record: dict | None) -> None:
    """The product's default MF against implicit's ALS, paired over the same users, NDCG@10 and HR@10."""
    if als_record is None:
        return
    for row in rows:
        if row["name"].startswith("MF, product default"):
            for figure in ("ndcg_at_10", "hr_at_10"):
                paired = paired_mean_difference(mf_record[f"user_{figure}"], als_record[f"user_{figure}"])
                row[f"{figure}_vs_als"], row[f"{figure}_vs_als_ci95"] = paired["delta"], paired["delta_ci95"]


# -- the >= 8x point: the same config the sweep builds (--rec-dims 0.125 --rec-recovery-steps 10 --rec-bits 4) --
POINT = RecommendPointConfig(embedding_bits=4, dim_prune_ratio=0.125, recovery_steps=10)


def compressed_point(split, model, settings, rounds: int) -> dict:
    """``POINT`` built by the sweep's own code on the default MF: test figures paired with the float model, stored
    table bytes, and the time to score 100 and 1,000 candidates for one user, float and point interleaved."""
    log(f"compressing the default MF: {POINT.label()}")
    point, notes = compress_recommender(model, POINT, split, settings)
    float_record, point_record = rec_metrics.evaluate(model, split), rec_metrics.evaluate(point, split)
    paired = paired_mean_difference(point_record["user_ndcg_at_10"], float_record["user_ndcg_at_10"])
    float_bytes, point_bytes = byte_counts(model)["embedding_bytes"], byte_counts(point)["embedding_bytes"]
    generator = torch.Generator().manual_seed(0)
    timing, load = {}, {"loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    with torch.no_grad():
        for count in (100, 1000):
            candidates = torch.randint(0, model.n_items, (count,), generator=generator)
            timing[count] = interleaved_latency({"float32": ScoreCandidates(model, 7), "point": ScoreCandidates(point, 7)},
                                                {"items": candidates}, "float32", rounds=rounds, runs=5)
    load["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return {"config": POINT.to_dict(), "label": POINT.label(), "notes": notes,
            "float": {f: float_record[f] for f in ("ndcg_at_10", "hr_at_10")},
            "point": {f: point_record[f] for f in ("ndcg_at_10", "hr_at_10")},
            "point_ci95": {f: point_record[f"{f}_ci95"] for f in ("ndcg_at_10", "hr_at_10")},
            "ndcg_at_10_diff": paired["delta"], "ndcg_at_10_diff_ci95": paired["delta_ci95"],
            "float_embedding_bytes": float_bytes, "point_embedding_bytes": point_bytes,
            "float_over_point": float_bytes / point_bytes, "rounds": rounds, **load,
            "latency_ms": {str(c): {n: t["ms"] for n, t in v.items()} for c, v in timing.items()},
            "speedup_vs_float": {str(c): v["point"]["speedup"] for c, v in timing.items()}}


# -- size and speed --------------------------------------------------------------------------------------------------
class ScoreCandidates(nn.Module):
    """``model.score_candidates(user, items)`` as a module of one tensor (for the engine's latency timer)."""

    def __init__(self, model, user: int):
        super().__init__()
        self.model, self.user = model, int(user)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.model.score_candidates(self.user, items)


class LookupRows(nn.Module):
    def __init__(self, model, table: str = "item_embedding"):
        super().__init__()
        self.model, self.table = model, table

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_submodule(self.table)(ids)


class CollectionForward(nn.Module):
    """The tables' kernel alone: one forward of a twin's collection on a prepared input (4,096 one-id bags of
    the item table, empty bags of the others), or an ``nn.Embedding`` lookup for the plain model; what the
    twin's per-call Python (building that input, cutting out one table's columns) adds is left out."""

    def __init__(self, model, ids: torch.Tensor, table: str = "item_embedding"):
        super().__init__()
        self.model, self.table = model, table
        holder = getattr(model, "torchrec_tables", None)
        self.features = None
        if holder is not None:
            from torchrec import KeyedJaggedTensor

            lengths = torch.cat([torch.full((ids.numel(),), int(k == table), dtype=torch.long) for k in holder.keys])
            self.features = KeyedJaggedTensor(keys=holder.keys, values=ids, lengths=lengths)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.features is None:
            return self.model.get_submodule(self.table)(ids)
        return self.model.torchrec_tables.collection(self.features).values()


def size_and_speed(model, rounds: int, label: str) -> dict:
    variants = {"nn.Embedding float32": model, "TorchRec EBC float32": torchrec_twin.twin(model, "float"),
                "TorchRec int8 row-wise": torchrec_twin.twin(model, "int8"),
                "TorchRec int4 row-wise": torchrec_twin.twin(model, "int4")}
    precision = {"nn.Embedding float32": "float", "TorchRec EBC float32": "float", "TorchRec int8 row-wise": "int8",
                 "TorchRec int4 row-wise": "int4"}
    generator = torch.Generator().manual_seed(0)
    candidates = torch.randint(0, model.n_items, (1000,), generator=generator)
    ids = torch.randint(0, model.n_items, (4096,), generator=generator)
    with torch.no_grad():
        scoring = interleaved_latency({n: ScoreCandidates(m, 7) for n, m in variants.items()}, {"items": candidates},
                                      "nn.Embedding float32", rounds=rounds, runs=5)
        lookup = interleaved_latency({n: LookupRows(m) for n, m in variants.items()}, {"ids": ids},
                                     "nn.Embedding float32", rounds=rounds, runs=5)
        kernel = interleaved_latency({n: CollectionForward(m, ids) for n, m in variants.items()}, {"ids": ids},
                                     "nn.Embedding float32", rounds=rounds, runs=5)
    tables = model.embedding_tables()
    float_bytes = torchrec_twin.table_bytes(model)["total"]
    rows = []
    for name, variant in variants.items():
        stored = torchrec_twin.table_bytes(variant)
        rows.append({"variant": name, "stored_bytes": stored["total"], "storage": stored["storage"],
                     "payload_bytes": torchrec_twin.payload_bytes(tables, precision[name]),
                     "float_over_stored": float_bytes / stored["total"],
                     "score_1000_ms": scoring[name]["ms"], "score_speedup_vs_nn": scoring[name]["speedup"],
                     "lookup_4096_ms": lookup[name]["ms"], "lookup_speedup_vs_nn": lookup[name]["speedup"],
                     "kernel_4096_ms": kernel[name]["ms"], "kernel_speedup_vs_nn": kernel[name]["speedup"]})
    shapes = {n: [int(t.num_embeddings), int(t.embedding_dim)] for n, t in tables.items()}
    return {"label": label, "tables": shapes, "rounds": rounds, "rows": rows}


# -- printing ----------------------------------------------------------------------------------------------------------
def _pct(value, ci) -> str:
    if value is None:
        return "–"
    text = f"{100 * value:.1f}"
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def print_tables(result: dict) -> None:
    split = result["split"]
    print(f"\nQuality on {split['source']}: {split['users']} users, {split['items']} items, "
          f"{split['train_interactions']:,} training interactions; test items ranked among 100 (HR@10, NDCG@10) "
          "and over the catalogue (Recall@20, NDCG@20); % with 95% intervals over users")
    print(f"{'row':<40} {'HR@10':>20} {'NDCG@10':>20} {'Recall@20':>20} {'NDCG@20':>20} {'NDCG@10 - default':>20}  fit s")
    for row in result["quality"]:
        delta = _pct(row.get("ndcg_at_10_vs_mf"), row.get("ndcg_at_10_vs_mf_ci95"))
        seconds = f"{row['seconds']:.1f}" if row.get("seconds") is not None else "–"
        print(f"{row['name']:<40} " + " ".join(f"{_pct(row[f], row[f + '_ci95']):>20}" for f in FIGURES)
              + f" {delta:>20}  {seconds}")
    for row in result["quality"]:
        if row.get("ndcg_at_10_vs_als") is not None:
            print(f"{row['name']} - implicit ALS, paired: NDCG@10 "
                  f"{_pct(row['ndcg_at_10_vs_als'], row['ndcg_at_10_vs_als_ci95'])}, HR@10 "
                  f"{_pct(row['hr_at_10_vs_als'], row['hr_at_10_vs_als_ci95'])} points")
    point = result.get("point")
    if point:
        print(f"\n{point['label']}: NDCG@10 {_pct(point['point']['ndcg_at_10'], point['point_ci95']['ndcg_at_10'])} "
              f"vs float {100 * point['float']['ndcg_at_10']:.1f}, paired {_pct(point['ndcg_at_10_diff'], point['ndcg_at_10_diff_ci95'])} "
              f"points; tables {point['point_embedding_bytes']:,} vs {point['float_embedding_bytes']:,} bytes "
              f"({point['float_over_point']:.2f}x smaller); load {point['loadavg_before']} -> {point['loadavg_after']}")
        for count, times in point["latency_ms"].items():
            print(f"  score {count} candidates, ms median [p25, p75]: " + ", ".join(
                f"{n} {t['median']:.3f} [{t['p25']:.3f}, {t['p75']:.3f}]" for n, t in times.items()))
    comparison = result.get("sharded_comparison")
    if comparison:
        print(f"\nSharded MF, validation NDCG@10: 1 process {_pct(comparison['val_ndcg_at_10_1proc'], comparison['val_ndcg_at_10_1proc_ci95'])}"
              f", 2 processes {_pct(comparison['val_ndcg_at_10_2proc'], comparison['val_ndcg_at_10_2proc_ci95'])}"
              f"; paired 2 - 1: {_pct(comparison['paired_delta_2_minus_1'], comparison['paired_delta_ci95'])} points")
    for block in result["size_speed"]:
        print(f"\nSize and speed, {block['label']} (tables {block['tables']}; {block['rounds']} interleaved rounds; "
              "ms median [p25, p75])")
        print(f"{'variant':<26} {'stored bytes':>14} {'x smaller':>10} {'score 1,000 ms':>26} "
              f"{'lookup 4,096 ms':>26} {'kernel 4,096 ms':>26}")
        for row in block["rows"]:
            cells = " ".join(f"{t['median']:>10.3f} [{t['p25']:.3f}, {t['p75']:.3f}]"
                             for t in (row["score_1000_ms"], row["lookup_4096_ms"], row["kernel_4096_ms"]))
            print(f"{row['variant']:<26} {row['stored_bytes']:>14,} {row['float_over_stored']:>10.2f} {cells}")


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    data = args.data or ((shared_data_dir() or Path("/nonexistent")) / "movielens-small")
    if not (data / "ratings.csv").exists():
        print(f"no ratings.csv in {data}: give --data (a MovieLens folder)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    ctx = make_context(quick=args.quick, out_dir=args.out.parent,
                       command="python -m bench.recommend" + (" " + " ".join(argv or sys.argv[1:])).rstrip())
    env = environment(ctx)
    from importlib.metadata import version

    env.update({name: version(name) for name in ("torchrec", "fbgemm-gpu-cpu", "implicit")})
    started = time.perf_counter()
    split = leave_last_out(implicit(read_log(data / "ratings.csv", "userId", "movieId", "rating", "timestamp")),
                           seed=0)
    result = {"section": "recommend", "environment": env,
              "split": {"source": str(data.name), "users": split.n_users, "items": split.n_items,
                        "train_interactions": int(split.train_users.shape[0]), "seed": 0,
                        "test_fingerprint": split.fingerprint("test"), "negatives_per_user": 99}}
    rows, extra = quality(split, data, args.quick, not args.no_distributed, args.threads)
    result["quality"] = rows
    result["sharded_comparison"] = extra["sharded_comparison"]
    rounds = args.rounds or (10 if args.quick else 30)
    result["point"] = compressed_point(split, extra["models"]["mf"], extra["models"]["mf_settings"], rounds)
    result["size_speed"] = []
    if not args.no_size_speed:
        log("timing the MF's tables: nn.Embedding, TorchRec float, int8, int4")
        result["size_speed"].append(size_and_speed(extra["models"]["mf"], rounds, "the trained MF on MovieLens"))
    if args.large_rows and not args.no_size_speed:
        log(f"timing a synthetic MF with {args.large_rows:,} items x 64")
        torch.manual_seed(0)
        large = MatrixFactorization(1000, args.large_rows, dim=64).eval()
        result["size_speed"].append(size_and_speed(large, rounds, f"a synthetic MF, {args.large_rows:,} items x 64"))
    env["seconds"] = time.perf_counter() - started
    env["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    print_tables(result)
    log(f"wrote {args.out} in {env['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
