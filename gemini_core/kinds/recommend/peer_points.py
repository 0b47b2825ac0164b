"""Library peers as points of a recommender sweep: made on the sweep's split, measured by the product's own code
(``measure.measure_recommend_point``: the same held-out items, sampled negatives, bootstrap, timing rounds and
memory reading), stored in the same run beside the product's points, and never shipped.

- ``implicit-als`` / ``implicit-bpr``: implicit's ALS and BPR (``peers.py``), a well-kept CPU library baseline
  for quality. Fitted on the training interactions only; the settings are picked by validation NDCG@10 among
  the first ``grid`` settings of ``peers.GRIDS`` (the test items are never looked at before the choice).
- ``torchrec-int8`` / ``torchrec-int4``: the sweep's trained float baseline with its tables served by TorchRec's
  own row-wise quantized ``EmbeddingBagCollection`` (``torchrec_twin.twin``: FBGEMM's CPU kernels), for size
  and speed. Its bytes are the collection's storage (``torchrec_twin.table_bytes``) plus the float32 dense
  layers: nothing is written for a peer, so there is no file to count.

A peer's record carries ``peer`` (what it is, in words): the shared code (``results.peers``) keeps such records
off the Pareto front and out of the ship rule and export, and the tables and charts mark them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from gemini_core.errors import ConfigError
from gemini_core.kinds.recommend import peers, torchrec_twin
from gemini_core.kinds.recommend.data import RankingSplit
from gemini_core.kinds.recommend.measure import RecommendMeasureSettings, measure_recommend_point, stored_values
from gemini_core.kinds.recommend.models import Recommender
from gemini_core.kinds.recommend.stored import byte_counts, weights_sha256

# name -> (library, what it is in words, implicit's peer or TorchRec's precision)
PEERS = {
    "implicit-als": ("implicit", "implicit ALS (library)", "als"),
    "implicit-bpr": ("implicit", "implicit BPR (library)", "bpr"),
    "torchrec-int8": ("torchrec", "TorchRec int8 row-wise (library)", "int8"),
    "torchrec-int4": ("torchrec", "TorchRec int4 row-wise (library)", "int4"),
}
# every setting of the larger grid (ALS: 8); fewer keep a quick sweep or a test short
DEFAULT_GRID = max(len(g) for g in peers.GRIDS.values())
# rough seconds on 2 busy cores for the synthetic demo (shown as estimates): one implicit fit, one twin
SECONDS_ESTIMATE = {"implicit": 0.5, "torchrec": 2.0}


def check_names(names) -> tuple[str, ...]:
    """The peer names, each checked: an unknown one is one line naming the choices."""
    for name in names:
        if name not in PEERS:
            raise ConfigError(f"unknown library peer {name!r}: choose from {', '.join(PEERS)}")
    return tuple(names)


def require(names) -> None:
    """One line with the install hint when a library the peers need is missing (before anything is trained)."""
    libraries = {PEERS[n][0] for n in check_names(names)}
    if "implicit" in libraries:
        peers.require_implicit()
    if "torchrec" in libraries:
        torchrec_twin.require_torchrec()


@dataclass(frozen=True)
class RecommendPeerConfig:
    """One library peer of a sweep; its key is stored like a point's, so a re-run reuses it."""

    peer: str
    grid: int = 0  # implicit peers: settings of ``peers.GRIDS`` tried on validation; 0 for TorchRec's

    def __post_init__(self) -> None:
        check_names([self.peer])
        if self.library == "implicit" and int(self.grid) < 1:
            raise ConfigError(f"peer {self.peer}: try at least 1 setting of its grid, not {self.grid}")
        if self.library == "torchrec" and self.grid:
            raise ConfigError(f"peer {self.peer} converts the trained baseline: it has no grid")

    @property
    def library(self) -> str:
        return PEERS[self.peer][0]

    @property
    def description(self) -> str:
        return PEERS[self.peer][1]

    # a peer is never the reference or the control, nor recovered
    is_reference = False
    is_control = False
    recovery_steps = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RecommendPeerConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown library peer setting(s): {', '.join(unknown)}")
        return cls(**data)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def label(self) -> str:
        return f"peer: {self.description}"


def peer_config(name: str, grid: int = DEFAULT_GRID) -> RecommendPeerConfig:
    """The config of peer ``name``: an implicit peer tries ``grid`` settings, a TorchRec peer none."""
    check_names([name])
    return RecommendPeerConfig(name, int(grid) if PEERS[name][0] == "implicit" else 0)


def tuned_implicit(split: RankingSplit, which: str, grid: int, seed: int = 0) -> tuple[Recommender, dict]:
    """implicit's ``which`` (``peers.PEERS``: als, bpr) tuned on validation NDCG@10 over the first ``grid``
    settings of ``peers.GRIDS[which]`` (the sweep's peers and the bench use it): (model, what was chosen)."""
    best = peers.tune(split, which, peers.GRIDS[which][:int(grid)], seed=seed)
    chosen = {k: v for k, v in best["settings"].to_dict().items() if k not in ("peer", "seed")}
    return best["model"], {"chosen_on_validation": chosen, "val_ndcg_at_10": best["val_ndcg_at_10"],
                           "settings_tried": len(best["tried"]), "fit_seconds": round(best["seconds"], 3),
                           "tuning_seconds": round(sum(t["seconds"] for t in best["tried"]), 3),
                           "tried": best["tried"]}


def _torchrec_peer(baseline: Recommender, config: RecommendPeerConfig) -> tuple[Recommender, dict, dict]:
    twin = torchrec_twin.twin(baseline, PEERS[config.peer][2])
    stored = torchrec_twin.table_bytes(twin)
    dense = byte_counts(baseline)["dense_bytes"]  # towers, text vectors: float32, as the baseline holds them
    held = {"embedding_bytes": int(stored["total"]), "dense_bytes": int(dense),
            "size_bytes": int(stored["total"] + dense),
            "size_written": f"not written (a peer): {stored['storage']} plus float32 dense layers",
            "params": stored_values(baseline)}
    return twin, {"quantized_tables": dict(twin.torchrec_tables.quantized_tables)}, held


def peer_model(baseline: Recommender, split: RankingSplit, config: RecommendPeerConfig,
               seed: int = 0) -> tuple[Recommender, dict, dict | None]:
    """(the peer's model, what was chosen, its bytes when it is not stored in the product's layout): an implicit
    peer fitted and tuned on ``split`` (seeded, single-threaded: the same weights every time), a TorchRec peer
    converted from ``baseline``. A sweep measures it; retime makes it again to time it beside the points."""
    if config.library == "implicit":
        model, notes = tuned_implicit(split, PEERS[config.peer][2], config.grid, seed)
        return model, notes, None
    return _torchrec_peer(baseline, config)


def peer_record(baseline: Recommender, split: RankingSplit, config: RecommendPeerConfig,
                measure: RecommendMeasureSettings, seed: int = 0, should_stop=None) -> dict:
    """One peer's record: made by ``peer_model`` on ``split`` and measured as every point is."""
    model, notes, held = peer_model(baseline, split, config, seed)
    record = measure_recommend_point(model, split, measure, should_stop=should_stop, stored=held)
    if held is None:  # stored in the product's layout: its hash says a rebuild made the same model
        record["weights_sha256"] = weights_sha256(model)
    record.update({"config": config.to_dict(), "label": config.label(), "peer": config.description,
                   "peer_library": config.library, "peer_notes": notes, "status": "ok"})
    return record
