"""Sharded training of a recommender with TorchRec's DistributedModelParallel, launched with torchrun.

    python -m gemini_core.kinds.recommend.distributed --nproc 2 --data demo --model mf --out run.json

re-launches itself on this machine as ``python -m torch.distributed.run --nproc-per-node 2 ... -m
gemini_core.kinds.recommend.distributed ...`` (the way ``gemini_core.training.distributed`` launches the
product's training); each worker joins the process group (gloo on CPU), builds the same split and the same
initial model (one seed), and trains the model's TorchRec twin (``torchrec_twin``) with its embedding
collection sharded over the processes by DistributedModelParallel; the dense layers (the towers of a two-tower
model) are replicated and averaged by DistributedDataParallel. After every epoch the tables are gathered on
rank 0, which measures validation NDCG@10 on the plain model (``gather_model``: the model definition the rest of
the product uses) and keeps the best epoch; the result is one JSON record from rank 0.

The same run on 1 and on N processes: the global batch (``--batch-size``) is drawn by one seeded generator on
every rank (data order and negatives, as ``train.py`` draws them) and each rank takes its 1/N slice, so both
see the same examples in the same order. TorchRec averages the embedding gradients over the ranks (as DDP does
the dense ones) and each rank's loss is the mean over its slice, so a step is the step of the global batch's
mean loss; a batch is cut to a multiple of N (the last of an epoch loses at most N - 1 examples). What differs
is the order of floating-point sums.

The optimizer is fused into the tables' backward (FBGEMM's batched embedding kernel on CPU): exact Adagrad by
default (exact SGD with ``--optimizer sgd``). ``train.py`` uses Adam, which FBGEMM's CPU kernels do not offer,
so a sharded run is compared with another sharded run (1 vs N processes), not with ``train.py``'s figures.

What runs where (TorchRec 1.8, fbgemm-gpu-cpu 1.8, torch 2.13): on CPU with gloo, ``table_wise``,
``column_wise`` and ``table_column_wise`` sharding (the ``fused`` kernel, tables padded to a width divisible by
4) and ``data_parallel`` (the ``dense`` kernel). ``row_wise``, ``table_row_wise`` and ``grid_shard`` sharding,
the UVM / UVM-caching / key-value / SSD kernels, NCCL and Adam-family fused optimizers need CUDA GPUs (and the
CUDA build of FBGEMM). This script trains on CPU over gloo only; a GPU run (NCCL, one GPU per process) was not
tried.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from gemini_core.errors import ConfigError, GeminiError
from gemini_core.kinds.recommend import torchrec_twin
from gemini_core.kinds.recommend.data import RankingSplit, demo_log, implicit, leave_last_out, read_log
from gemini_core.kinds.recommend.metrics import evaluate, sampled_ndcg, summary_line
from gemini_core.kinds.recommend.models import Recommender, build_model
from gemini_core.kinds.recommend.train import (
    RecommendTrainSettings,
    new_model,
    row_penalty,
    sample_negatives,
    sampled_loss,
)
from gemini_core.training.distributed import (
    all_reduce,
    dist_info,
    free_port,
    in_worker,
    init_worker,
    shutdown_worker,
    strip_nproc,
)
from gemini_core.training.loop import reproducible

SHARDINGS_CPU = ("table_wise", "column_wise", "table_column_wise", "data_parallel")
SHARDINGS_CUDA_ONLY = ("row_wise", "table_row_wise", "grid_shard")
OPTIMIZERS = {"adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}  # what FBGEMM's CPU kernels fuse (exactly)
DEFAULT_LR = {"adagrad": 0.05, "sgd": 0.5}
MODULE = "gemini_core.kinds.recommend.distributed"


# -- launching ---------------------------------------------------------------------------------------------------
def launch_command(argv: list[str], nproc: int, port: int | None = None) -> list[str]:
    """The torchrun command line that runs this module with ``argv`` on ``nproc`` local processes."""
    if int(nproc) < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(int(nproc)),
            "--master-addr", "127.0.0.1", "--master-port", str(port or free_port()), "-m", MODULE,
            *strip_nproc(argv)]


def launch(argv: list[str], nproc: int, timeout: float | None = None) -> int:
    """Run this module's ``argv`` on ``nproc`` processes of this machine; the exit code."""
    env = dict(os.environ)
    # one equal share of the cores per worker (torchrun would set 1 and warn about it)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(nproc))))
    package_root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return subprocess.run(launch_command(argv, nproc), env=env, timeout=timeout).returncode


# -- the sharded twin --------------------------------------------------------------------------------------------
def shard(model: Recommender, sharding: str = "table_wise", optimizer: str = "adagrad", lr: float | None = None,
          device: torch.device | None = None):
    """``model``'s TorchRec twin with its collection sharded over the process group (``sharding`` for every
    table) and the optimizer fused into the tables' backward; the initial weights are ``model``'s."""
    torchrec_twin.require_torchrec()
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

    device = device or torch.device("cpu")
    if sharding in SHARDINGS_CUDA_ONLY and device.type != "cuda":
        raise ConfigError(f"{sharding} sharding is offered by TorchRec for CUDA devices only; on CPU choose "
                          f"{', '.join(SHARDINGS_CPU)}")
    if sharding not in SHARDINGS_CPU + SHARDINGS_CUDA_ONLY:
        raise ConfigError(f"sharding {sharding!r}: choose from {', '.join(SHARDINGS_CPU + SHARDINGS_CUDA_ONLY)}")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer {optimizer!r}: FBGEMM's CPU kernels fuse {', '.join(OPTIMIZERS)}")
    tables = torchrec_twin.tables_of(model)
    initial = {name: t.weight.detach().clone() for name, t in tables.items()}
    twin = torchrec_twin.twin(model, "float", width_multiple=torchrec_twin.FBGEMM_WIDTH_MULTIPLE).train()
    collection = twin.torchrec_tables.collection
    apply_optimizer_in_backward(OPTIMIZERS[optimizer], collection.parameters(),
                                {"lr": float(lr if lr is not None else DEFAULT_LR[optimizer])})
    kernel = "dense" if sharding == "data_parallel" else "fused"
    constraints = {name: ParameterConstraints(sharding_types=[sharding], compute_kernels=[kernel]) for name in tables}
    _, world = dist_info()
    planner = EmbeddingShardingPlanner(topology=Topology(world_size=world, compute_device=device.type),
                                       constraints=constraints)
    sharders = [EmbeddingBagCollectionSharder()]
    plan = planner.collective_plan(twin, sharders, dist.GroupMember.WORLD)
    sharded = DistributedModelParallel(twin, device=device, plan=plan, sharders=sharders)
    # DistributedModelParallel initialises the shards afresh: put the model's weights back in each local shard
    load_tables(sharded, initial)
    return sharded


def _table_states(sharded) -> dict[str, object]:
    """{table name: its state (a ShardedTensor, or a plain tensor when replicated)} of a sharded twin."""
    out = {}
    for key, value in sharded.state_dict().items():
        if ".embedding_bags." in key and key.endswith(".weight"):
            out[key.rsplit(".", 2)[-2]] = value
    return out


@torch.no_grad()
def load_tables(sharded, full: dict[str, torch.Tensor]) -> None:
    """Copy each full table (unpadded) into this rank's shards of it (zero in the padding columns)."""
    for name, state in _table_states(sharded).items():
        source = full[name]
        if hasattr(state, "local_shards"):
            for piece in state.local_shards():
                (r0, c0), (rows, cols) = piece.metadata.shard_offsets, piece.metadata.shard_sizes
                padded = torch.zeros(rows, cols, dtype=source.dtype)
                block = source[r0:r0 + rows, c0:min(c0 + cols, source.shape[1])]
                padded[:, :block.shape[1]] = block
                piece.tensor.copy_(padded)
        else:
            state.zero_()
            state[:, :source.shape[1]].copy_(source)


@torch.no_grad()
def gather_tables(sharded, widths: dict[str, int]) -> dict[str, torch.Tensor] | None:
    """Every table in full (padding cut) on rank 0, None on the others. Collective: every rank calls it."""
    rank, _ = dist_info()
    out = {}
    for name, state in _table_states(sharded).items():
        if hasattr(state, "local_shards"):  # a ShardedTensor (a replicated table is a plain tensor)
            full = torch.zeros(tuple(state.size()), dtype=state.dtype) if rank == 0 else None
            state.gather(dst=0, out=full)
        else:
            full = state.detach().clone()
        if rank == 0:
            out[name] = full[:, :widths[name]].clone()
    return out if rank == 0 else None


def gather_model(sharded, arch: dict, text_features: torch.Tensor | None = None) -> Recommender | None:
    """The plain model (``build_model(arch)``) holding the sharded twin's weights, on rank 0 (None elsewhere):
    the tables gathered, the replicated dense layers copied. Collective."""
    reference = build_model(arch, text_features)
    widths = {name: int(t.embedding_dim) for name, t in reference.embedding_tables().items()}
    tables = gather_tables(sharded, widths)
    if tables is None:
        return None
    state = {}
    for key, value in sharded.state_dict().items():
        if key.startswith("torchrec_tables."):
            continue
        state[key] = value.detach().clone() if isinstance(value, torch.Tensor) else value
    for name, weight in tables.items():
        state[f"{name}.weight"] = weight
    reference.load_state_dict(state, strict=True)
    return reference.eval()


# -- training ------------------------------------------------------------------------------------------------------
def train_sharded(split: RankingSplit, settings: RecommendTrainSettings, sharding: str = "table_wise",
                  optimizer: str = "adagrad", lr: float | None = None, log=print) -> dict | None:
    """Train ``settings.model`` on ``split`` inside the process group; rank 0 returns the record (best epoch's
    validation NDCG@10 with its interval, the test figures, the per-epoch history), the others None."""
    # sharded tables are stepped by FBGEMM's fused optimizers inside the backward: a gradient loss, never ALS
    settings = settings.for_steps()
    rank, world = dist_info()
    if settings.batch_size % world:
        raise ConfigError(f"the global batch ({settings.batch_size}) must divide into {world} equal slices")
    begin_time = time.perf_counter()
    with reproducible(settings.seed, settings.threads):
        model = new_model(split, settings)  # the same seed on every rank: the same initial weights
        arch = model.arch()
        sharded = shard(model, sharding, optimizer, lr)
        from torchrec.optim.optimizers import in_backward_optimizer_filter

        # what the tables' fused optimizer does not step: the dense layers, and tables replicated by data-parallel
        # sharding (the dense kernel: plain parameters, averaged by DDP)
        dense = [p for _, p in in_backward_optimizer_filter(sharded.named_parameters()) if p.requires_grad]
        dense_opt = (OPTIMIZERS[optimizer](dense, lr=float(lr if lr is not None else DEFAULT_LR[optimizer]))
                     if dense else None)
        twin = sharded.module  # the twin's own methods (the sharded collection inside)
        users = torch.as_tensor(split.train_users, dtype=torch.long)
        items = torch.as_tensor(split.train_items, dtype=torch.long)
        n, n_items, k = int(users.shape[0]), split.n_items, settings.negatives
        keys = torch.sort(users * n_items + items).values
        generator = torch.Generator().manual_seed(settings.seed)
        history, best, best_state, waited, steps, stopped = [], -math.inf, None, 0, 0, "epochs"
        for epoch in range(1, settings.epochs + 1):
            sharded.train()
            order = torch.randperm(n, generator=generator)
            total, batches = 0.0, 0
            for start in range(0, n, settings.batch_size):
                index = order[start:start + settings.batch_size]
                u, i = users[index], items[index]
                j = sample_negatives(u, k, n_items, keys, generator)  # drawn for the global batch on every rank
                width = (u.shape[0] // world) * world
                if width == 0:
                    continue
                piece = slice(rank * (width // world), (rank + 1) * (width // world))
                u, i, j = u[piece], i[piece], j[piece]
                positive = sharded(u, i)
                negative = sharded(u.repeat_interleave(k), j.reshape(-1)).reshape(-1, k)
                loss = sampled_loss(settings.objective, positive, negative)
                if settings.penalty:
                    loss = loss + settings.penalty * row_penalty(twin, u, torch.cat([i, j.reshape(-1)]))
                if dense_opt is not None:
                    dense_opt.zero_grad(set_to_none=True)
                loss.backward()  # the tables' optimizer steps inside the backward
                if dense_opt is not None:
                    dense_opt.step()
                total, batches, steps = total + float(loss.detach()), batches + 1, steps + 1
                if settings.max_steps is not None and steps >= settings.max_steps:
                    break
            # the loss of the epoch over every rank's slices (each rank saw only its own)
            total = all_reduce([total], torch.device("cpu"))[0] / world
            plain = gather_model(sharded, arch)
            flag = torch.zeros(1)
            if rank == 0:
                value = sampled_ndcg(plain, split, "val")
                record = {"epoch": epoch, "loss": total / max(batches, 1), "val_ndcg_at_10": value, "steps": steps,
                          "seconds": time.perf_counter() - begin_time}
                history.append(record)
                log(f"epoch {epoch}: loss {record['loss']:.4f}, validation NDCG@10 {100 * value:.2f}% "
                    f"({record['seconds']:.0f} s)")
                if value > best:
                    best, best_state, waited = value, {k: v.clone() for k, v in plain.state_dict().items()}, 0
                else:
                    waited += 1
                if settings.max_steps is not None and steps >= settings.max_steps:
                    flag[0], stopped = 1, "max_steps"
                elif settings.patience and waited >= settings.patience:
                    flag[0], stopped = 1, "patience"
            dist.broadcast(flag, 0)  # every rank stops at the same epoch
            if flag.item():
                break
    if rank != 0:
        return None
    plain.load_state_dict(best_state)
    best_epoch = max(history, key=lambda r: r["val_ndcg_at_10"])["epoch"]
    val = evaluate(plain, split, "val", full=False)
    test = evaluate(plain, split, "test")
    keep = ("hr_at_10", "ndcg_at_10", "auc", "recall_at_20", "ndcg_at_20")
    return {"world_size": world, "sharding": sharding, "optimizer": optimizer,
            "lr": float(lr if lr is not None else DEFAULT_LR[optimizer]), "settings": settings.to_dict(),
            "best_epoch": best_epoch, "stopped": stopped, "steps": steps,
            "seconds": time.perf_counter() - begin_time, "history": history,
            "val": {k: v for k, v in val.items() if k.split("_ci95")[0] in keep or k == "users_n"},
            "test": {k: v for k, v in test.items() if k.split("_ci95")[0] in keep or k == "users_n"},
            "val_user_ndcg_at_10": val["user_ndcg_at_10"], "test_summary": summary_line(test),
            "weights_digest": _digest(plain)}


def _digest(model: nn.Module) -> float:
    """A cheap fingerprint of the weights (the sum of absolute values) to compare runs in a log."""
    return float(sum(float(p.detach().abs().double().sum()) for p in model.state_dict().values()))


# -- the data -------------------------------------------------------------------------------------------------------
def load_split(data: str, seed: int = 0, demo_users: int = 300) -> RankingSplit:
    """``demo`` (the SYNTHETIC demo, ``demo_users`` users) or a MovieLens folder / ratings.csv (userId, movieId,
    rating, timestamp)."""
    if data == "demo":
        return leave_last_out(demo_log(seed, users=demo_users), seed=seed)
    path = Path(data).expanduser()
    ratings = path / "ratings.csv" if path.is_dir() else path
    if not ratings.exists():
        raise GeminiError(f"{ratings} does not exist (give 'demo' or a MovieLens folder with ratings.csv)")
    return leave_last_out(implicit(read_log(ratings, "userId", "movieId", "rating", "timestamp")), seed=seed)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nproc", type=int, default=None, help="processes on this machine (re-launches with torchrun)")
    parser.add_argument("--data", default="demo", help="'demo' or a MovieLens folder (ratings.csv)")
    parser.add_argument("--demo-users", type=int, default=300, help="users of the SYNTHETIC demo")
    parser.add_argument("--model", default="mf", choices=("mf", "two-tower"))
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024, help="the global batch (split over the processes)")
    parser.add_argument("--negatives", type=int, default=4)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--optimizer", default="adagrad", choices=tuple(OPTIMIZERS))
    parser.add_argument("--sharding", default="table_wise", choices=SHARDINGS_CPU + SHARDINGS_CUDA_ONLY)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write rank 0's JSON record here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if not in_worker():
        return launch(argv, args.nproc or 1)
    init_worker("cpu")
    try:
        split = load_split(args.data, demo_users=args.demo_users)
        settings = RecommendTrainSettings(model=args.model, loss="bpr", dim=args.dim, hidden=args.hidden,
                                          epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
                                          negatives=args.negatives,
                                          l2=args.l2, seed=args.seed, max_steps=args.max_steps)
        record = train_sharded(split, settings, args.sharding, args.optimizer, args.lr,
                               log=lambda line: print(line, flush=True))
        if record is not None:
            record["data"] = args.data
            text = json.dumps(record, indent=1, default=_plain)
            if args.out:
                Path(args.out).write_text(text, encoding="utf-8")
            print(f"{record['world_size']} process(es), {args.sharding}: best epoch {record['best_epoch']}, "
                  f"validation NDCG@10 {100 * record['val']['ndcg_at_10']:.2f}% "
                  f"[{100 * record['val']['ndcg_at_10_ci95'][0]:.2f}, {100 * record['val']['ndcg_at_10_ci95'][1]:.2f}]"
                  f"; test {record['test_summary']}", flush=True)
    finally:
        shutdown_worker()
    return 0


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


if __name__ == "__main__":
    raise SystemExit(main())
