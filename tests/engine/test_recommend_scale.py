"""The recommender at scale and its peers: the TorchRec twin of a model's embedding tables (float, int8, int4),
the sharded training over gloo processes, and implicit's ALS / BPR measured by the product's own metrics.

TorchRec, FBGEMM and implicit are the optional ``recommend`` extra: each test skips cleanly without them.
"""
from __future__ import annotations

import json
import math
import socket
import tomllib
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gemini_core.errors import ConfigError
from gemini_core.kinds.recommend.data import demo_log, leave_last_out
from gemini_core.kinds.recommend.metrics import evaluate
from gemini_core.kinds.recommend.models import MatrixFactorization, TwoTower

ROOT = Path(__file__).resolve().parents[2]


def _model(kind: str = "mf", seed: int = 0):
    torch.manual_seed(seed)
    model = MatrixFactorization(50, 70, dim=8) if kind == "mf" else TwoTower(50, 70, dim=8, hidden=12)
    if kind == "mf":  # biases start at zero: give them values, so a lookup of the wrong row would show
        torch.nn.init.normal_(model.item_bias.weight, std=0.3)
    return model.eval()


@pytest.fixture(scope="module")
def twin_module():
    pytest.importorskip("torchrec")
    pytest.importorskip("fbgemm_gpu")
    from gemini_core.kinds.recommend import torchrec_twin

    return torchrec_twin


# -- the float twin ------------------------------------------------------------------------------------------------
def test_embedding_bag_collection_holds_the_same_weights(twin_module):
    from torchrec import KeyedJaggedTensor

    model = _model()
    tables = model.embedding_tables()
    collection = twin_module.to_embedding_bag_collection(tables)
    ids = {"user_embedding": torch.tensor([3, 0, 49, 3]), "item_embedding": torch.tensor([69, 1, 2, 2]),
           "item_bias": torch.tensor([5, 5, 0, 68])}
    keys = list(tables)
    features = KeyedJaggedTensor.from_lengths_sync(keys=keys, values=torch.cat([ids[k] for k in keys]),
                                                   lengths=torch.ones(4 * len(keys), dtype=torch.long))
    pooled = collection(features).to_dict()
    for name, table in tables.items():
        assert torch.equal(pooled[name], table(ids[name])), name


@pytest.mark.parametrize("kind", ["mf", "two-tower"])
def test_float_twin_scores_like_the_model(twin_module, kind):
    model = _model(kind)
    twin = twin_module.twin(model, "float")
    assert not any(isinstance(m, torch.nn.Embedding) for m in twin.modules())  # every table swapped
    users = torch.arange(50).repeat_interleave(7)
    items = torch.randint(0, 70, (users.numel(),), generator=torch.Generator().manual_seed(1))
    for name in model.embedding_tables():
        ids = items if name.startswith("item") else users
        assert torch.equal(twin.get_submodule(name)(ids), model.get_submodule(name)(ids)), name
    torch.testing.assert_close(twin(users, items), model(users, items), rtol=0, atol=1e-6)
    torch.testing.assert_close(twin.score_candidates(4, torch.arange(70)), model.score_candidates(4, torch.arange(70)),
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(twin.score_all(torch.arange(50)), model.score_all(torch.arange(50)), rtol=0, atol=1e-6)
    # the twin's storage: the same float32 bytes
    assert twin_module.table_bytes(twin)["total"] == twin_module.table_bytes(model)["total"]


def test_twin_leaves_the_model_alone_and_checks_its_precision(twin_module):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    twin = twin_module.twin(model, "int8")
    assert isinstance(model.user_embedding, torch.nn.Embedding) and twin.user_embedding is not model.user_embedding
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ConfigError, match="precision"):
        twin_module.twin(model, "int3")


# -- the quantized twin ----------------------------------------------------------------------------------------------
FP16_STEP = 2.0 ** -10  # an fp16 number is within 2^-11 of its value relative to it; twice that, for safety


def _row_error_bound(weight: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Per row, how far FBGEMM's row-wise format may move a value: half a quantization step (the row's range over
    2^bits - 1), plus the fp16 rounding of the row's scale and bias (the range's and the minimum's fp16 error);
    a table kept in fp16 (bits None) moves by its fp16 rounding only."""
    low, high = weight.min(1).values, weight.max(1).values
    if bits is None:
        return FP16_STEP * weight.abs().max(1).values + 1e-8
    step = (high - low) / (2 ** bits - 1)
    return 0.5 * step + FP16_STEP * (low.abs() + (high - low)) + 1e-7


@pytest.mark.parametrize("precision", ["int8", "int4"])
@pytest.mark.parametrize("kind", ["mf", "two-tower"])
def test_quantized_twin_is_within_its_bound_and_smaller(twin_module, precision, kind):
    """Each row looked up through FBGEMM's quantized kernel is within the row-wise format's error (stated in
    ``_row_error_bound``), the MF scores within the error that follows for a dot product plus a bias, and the
    quantized tables take fewer bytes than float32 (int4 fewer than int8)."""
    model = _model(kind)
    bits = twin_module.BITS[precision]
    twin = twin_module.twin(model, precision)
    stored = twin.torchrec_tables.quantized_tables
    bounds = {}
    for name, table in model.embedding_tables().items():
        weight = table.weight.detach()
        table_bits = None if stored[name] == "fp16" else bits
        assert (table_bits is None) == (table.embedding_dim == 1)  # only the width-1 biases stay fp16
        bounds[name] = _row_error_bound(weight, table_bits)
        rows = twin.get_submodule(name)(torch.arange(table.num_embeddings))
        error = (rows - weight).abs().max(1).values
        assert bool((error <= bounds[name]).all()), (name, float((error - bounds[name]).max()))
    if kind == "mf":  # score = <p_u, q_i> + b_i: bound |p||dq| + |q||dp| + |dp||dq| + |db| per pair
        users = torch.arange(50).repeat_interleave(5)
        items = torch.randint(0, 70, (users.numel(),), generator=torch.Generator().manual_seed(2))
        p, q = model.user_embedding(users).detach(), model.item_embedding(items).detach()
        eu, ei = bounds["user_embedding"][users], bounds["item_embedding"][items]
        bound = p.abs().sum(1) * ei + q.abs().sum(1) * eu + p.shape[1] * eu * ei + bounds["item_bias"][items]
        error = (twin(users, items) - model(users, items)).detach().abs()
        assert bool((error <= bound).all()), float((error - bound).max())
    size = twin_module.table_bytes(twin)["total"]
    assert 0 < size < twin_module.table_bytes(model)["total"]
    if precision == "int4":
        # FBGEMM pads each packed row (values, fp16 scale and bias) to 16 bytes: at width 8 an int8 row (12 bytes)
        # and an int4 row (8) both take 16; at width 32 (36 -> 48 and 20 -> 32) int4 is smaller
        assert size <= twin_module.table_bytes(twin_module.twin(model, "int8"))["total"]
        wide = MatrixFactorization(50, 70, dim=32)
        assert (twin_module.table_bytes(twin_module.twin(wide, "int4"))["total"]
                < twin_module.table_bytes(twin_module.twin(wide, "int8"))["total"])


def test_quantized_twin_keeps_the_ranking_quality(twin_module):
    """On a trained model the int8 twin ranks the held-out items like the model (the same validation NDCG@10
    within half a point: int8's error is far below the gaps between scores that decide ranks)."""
    from gemini_core.kinds.recommend.train import RecommendTrainSettings, train_recommender

    split = leave_last_out(demo_log(0, users=80, items_per_cluster=25), seed=0)
    model = train_recommender(split, RecommendTrainSettings(epochs=3, patience=0)).model
    reference = evaluate(model, split, "val", full=False)["ndcg_at_10"]
    quantized = evaluate(twin_module.twin(model, "int8"), split, "val", full=False)["ndcg_at_10"]
    assert abs(quantized - reference) < 0.005
    latency = twin_module.scoring_latency(twin_module.twin(model, "int4"), candidates=100, repeats=5, warmup=1)
    assert latency["p50_s"] > 0 and latency["q25_s"] <= latency["p50_s"] <= latency["q75_s"]


# -- the sharded twin ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def single_process_group(twin_module):
    """A gloo process group of this one process (what a 1-process torchrun gives a worker)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("kind,sharding", [("mf", "table_wise"), ("two-tower", "table_wise"), ("mf", "column_wise"),
                                           ("mf", "data_parallel")])
def test_sharded_twin_starts_from_the_model_and_gathers_back(single_process_group, kind, sharding):
    from gemini_core.kinds.recommend import distributed

    model = _model(kind)
    sharded = distributed.shard(model, sharding)
    users = torch.arange(50)
    items = torch.randint(0, 70, (50,), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(sharded(users, items), model(users, items), rtol=0, atol=1e-6)
    plain = distributed.gather_model(sharded, model.arch())
    assert type(plain) is type(model)
    for key, value in model.state_dict().items():
        assert torch.equal(plain.state_dict()[key], value), key


@pytest.mark.parametrize("sharding", ["table_wise", "data_parallel"])
def test_sharded_training_steps_every_table(single_process_group, sharding):
    """Fused tables step inside the backward; replicated (data-parallel) tables and dense layers by the dense
    optimizer (a replicated table is not stepped inside the backward): after two steps the tables have moved."""
    from gemini_core.kinds.recommend import distributed
    from gemini_core.kinds.recommend.train import RecommendTrainSettings, new_model
    from gemini_core.training.loop import reproducible

    split = leave_last_out(demo_log(0, users=80, items_per_cluster=25), seed=0)
    settings = RecommendTrainSettings(epochs=1, max_steps=2, batch_size=128)
    with reproducible(settings.seed, settings.threads):
        initial = new_model(split, settings)
    record = distributed.train_sharded(split, settings, sharding, log=lambda line: None)
    assert record["steps"] == 2 and record["world_size"] == 1
    assert not math.isclose(record["weights_digest"], distributed._digest(initial), rel_tol=1e-6)


def test_cuda_only_sharding_is_refused_on_cpu(twin_module):
    from gemini_core.kinds.recommend import distributed

    with pytest.raises(ConfigError, match="CUDA devices only"):
        distributed.shard(_model(), "row_wise")


def test_launch_command_runs_this_module_under_torchrun():
    from gemini_core.kinds.recommend import distributed

    command = distributed.launch_command(["--nproc", "2", "--data", "demo"], 2, port=29999)
    assert command[1:4] == ["-m", "torch.distributed.run", "--nnodes"]
    assert command[-3:] == [distributed.MODULE, "--data", "demo"]  # the workers do not launch again
    assert "--nproc-per-node" in command and command[command.index("--nproc-per-node") + 1] == "2"


@pytest.mark.slow  # two torchrun launches (1 and 2 processes), each importing TorchRec: about a minute here
def test_two_gloo_processes_train_the_same_model_as_one(twin_module, tmp_path):
    """The same few steps on 1 and on 2 processes (same seed, same global batch) end in the same weights up to
    the order of floating-point sums."""
    from gemini_core.kinds.recommend import distributed

    records = {}
    for nproc in (1, 2):
        out = tmp_path / f"run{nproc}.json"
        code = distributed.main(["--nproc", str(nproc), "--data", "demo", "--demo-users", "80", "--epochs", "1",
                                 "--max-steps", "3", "--batch-size", "256", "--out", str(out)])
        assert code == 0 and out.exists()
        records[nproc] = json.loads(out.read_text())
    assert records[1]["world_size"] == 1 and records[2]["world_size"] == 2
    assert records[1]["steps"] == records[2]["steps"] == 3
    assert math.isclose(records[1]["weights_digest"], records[2]["weights_digest"], rel_tol=1e-4)
    assert abs(records[1]["val"]["ndcg_at_10"] - records[2]["val"]["ndcg_at_10"]) < 0.02


# -- the library peers -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("peer", ["als", "bpr"])
def test_peer_runs_on_a_tiny_log_and_is_measured_like_the_models(peer):
    pytest.importorskip("implicit")
    from gemini_core.kinds.recommend import peers

    split = leave_last_out(demo_log(0, users=80, items_per_cluster=25), seed=0)
    settings = peers.PeerSettings(peer=peer, factors=8, iterations=5 if peer == "als" else 30, learning_rate=0.05)
    model, seconds = peers.fit(split, settings)
    assert seconds >= 0 and model.user_embedding.weight.shape[0] == split.n_users
    record = evaluate(model, split, "test")
    assert record["users_n"] == 80 and record["negatives_per_user"] == 99
    # the demo's clusters are learnable: well above a random ranking's HR@10 of 10%
    assert record["hr_at_10_ci95"][0] > 0.2, record["hr_at_10"]
    again, _ = peers.fit(split, settings)  # seeded, one thread: the same factors
    assert torch.equal(again.item_embedding.weight, model.item_embedding.weight)


def test_peer_tuning_picks_by_validation():
    pytest.importorskip("implicit")
    from gemini_core.kinds.recommend import peers

    split = leave_last_out(demo_log(0, users=80, items_per_cluster=25), seed=0)
    best = peers.tune(split, "als", [{"factors": 4, "iterations": 3}, {"factors": 8, "iterations": 5}])
    assert len(best["tried"]) == 2
    assert best["val_ndcg_at_10"] == max(t["val_ndcg_at_10"] for t in best["tried"])
    with pytest.raises(ConfigError, match="peer"):
        peers.PeerSettings(peer="svd")


# -- packaging ------------------------------------------------------------------------------------------------------------
def _requirements(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            req = Requirement(line)
            out[canonicalize_name(req.name)] = str(sorted(str(s) for s in req.specifier))
    return out


def test_recommend_requirements_file_is_the_recommend_extra():
    """requirements-recommend.txt (how the extra is installed on CPU, with --no-deps) and pyproject's recommend
    extra list the same packages with the same bounds."""
    text = (ROOT / "requirements-recommend.txt").read_text(encoding="utf-8").splitlines()
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert _requirements(text) == _requirements(extra["recommend"])
    assert {"torchrec", "fbgemm-gpu-cpu", "implicit"} <= set(_requirements(text))


def test_installed_pair_is_the_declared_one(twin_module):
    import importlib.metadata

    declared = _requirements((ROOT / "requirements-recommend.txt").read_text(encoding="utf-8").splitlines())
    for name in ("torchrec", "fbgemm-gpu-cpu"):
        assert declared[name] == str([f"=={importlib.metadata.version(name)}"]), name
