"""A recommender sweep's grid (``RecommendSweepSpec``: a union of structural families crossed with the
quantization variants, see ``sweep.py``, and the library peers measured beside them, see ``peer_points.py``) and
its units: how one structure and its variants are built, recovered, measured and recorded, locally or in a Ray
task (``ray.py``), which is why this sits below both."""
from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Annotated

import torch
from pydantic import BeforeValidator, Field

from gemini_core.config import parse_list
from gemini_core.errors import Cancelled, ConfigError
from gemini_core.kinds.recommend import metrics
from gemini_core.kinds.recommend.compress import RecommendPointConfig, build_structure, quantize_model
from gemini_core.kinds.recommend.measure import RecommendMeasureSettings, measure_recommend_point
from gemini_core.kinds.recommend.peer_points import (
    DEFAULT_GRID,
    RecommendPeerConfig,
    check_names,
    peer_config,
    peer_record,
    require,
)
from gemini_core.kinds.recommend.peer_points import SECONDS_ESTIMATE as PEER_SECONDS
from gemini_core.kinds.recommend.scenario import RecommendScenario
from gemini_core.kinds.recommend.stored import layout, weights_sha256
from gemini_core.kinds.recommend.tables import HOT_BITS
from gemini_core.kinds.recommend.train import RecommendTrainSettings
from gemini_core.settings import Items, Number, Whole, settings

KIND = "recommend"
QUALITY_METRIC = metrics.QUALITY_METRIC
POINT_FORMAT = 1  # what a point's key promises about how it was built and measured
DEFAULT_RECOVERY_STEPS = 50
# Rough seconds on 2 busy cores for the synthetic demo (300 users, 240 items, dim 32), shown as estimates.
SECONDS_ESTIMATE = {"train": 10.0, "point": 1.5, "recovery_step": 0.05}

_LISTS = ("bits", "hot_shares", "row_prune_ratios", "dim_prune_ratios", "ranks", "qr_divisors",
          "tower_prune_ratios")


@dataclass(frozen=True)
class RecommendUnit:
    """One structure (built and recovered once) and the points measured on it."""

    structure: RecommendPointConfig
    configs: tuple


@dataclass(frozen=True)
class RecommendPeerUnit:
    """One library peer (``peer_points.py``), made and measured alone."""

    configs: tuple  # one RecommendPeerConfig


def config_from_dict(data: dict):
    """A stored record's config: a library peer's or a compression point's."""
    if isinstance(data, dict) and "peer" in data:
        return RecommendPeerConfig.from_dict(data)
    return RecommendPointConfig.from_dict(data)


def read_train_settings(value):
    """A stored grid's training settings dict read as RecommendTrainSettings (unknown keys named)."""
    return train_settings_from(value) if isinstance(value, dict) else value


def _read_measure(value):
    return RecommendMeasureSettings.from_dict(value) if isinstance(value, dict) else value


@settings
class RecommendSweepSpec:
    """The grid's axes (a value or a list, repeats dropped, order kept); each value is checked as the points are
    made, by RecommendPointConfig's own rules."""

    bits: Items[Whole] = (32, 8, 4)  # quantization variants of every structure (32: float)
    hot_shares: Items[Number] = ()  # mixed precision: this share of rows at 8 bits, the rest at each bits below 8
    row_prune_ratios: Items[Number] = ()
    dim_prune_ratios: Items[Number] = ()
    ranks: Items[Whole] = ()
    qr_divisors: Items[Whole] = ()
    tower_prune_ratios: Items[Number] = ()
    # the one budget of every structural point and the control
    recovery_steps: Annotated[Whole, Field(ge=0)] = DEFAULT_RECOVERY_STEPS
    # the baseline the points compress
    train: Annotated[RecommendTrainSettings, BeforeValidator(read_train_settings)] = RecommendTrainSettings()
    measure: Annotated[RecommendMeasureSettings, BeforeValidator(_read_measure)] = RecommendMeasureSettings()
    # library peers measured beside the points, on the same split (``peer_points.PEERS``); never shipped
    peers: Items[str] = ()
    # settings of each implicit peer's validation grid tried (the first ones of ``peers.GRIDS``)
    peer_grid: Annotated[Whole, Field(ge=1)] = DEFAULT_GRID

    def __post_init__(self) -> None:
        check_names(self.peers)
        if 32 not in self.bits:  # the float variant of every structure is always measured
            object.__setattr__(self, "bits", (32, *self.bits))
        for bits in self.bits:
            RecommendPointConfig(embedding_bits=bits)
        for share in self.hot_shares:
            RecommendPointConfig(embedding_bits=4, hot_share=share)
            if not share > 0:
                raise ConfigError(f"hot share {share!r} must be above 0 (the float and plain variants are "
                                  "always measured)")
        self.points()  # every point is validated now, naming the bad value

    # -- the grid
    def structures(self) -> list[RecommendPointConfig]:
        steps = int(self.recovery_steps)
        found = [RecommendPointConfig()]
        found += [RecommendPointConfig(row_prune_ratio=r, recovery_steps=steps) for r in self.row_prune_ratios]
        found += [RecommendPointConfig(dim_prune_ratio=r, recovery_steps=steps) for r in self.dim_prune_ratios]
        found += [RecommendPointConfig(rank=r, recovery_steps=steps) for r in self.ranks]
        found += [RecommendPointConfig(qr_divisor=m, recovery_steps=steps) for m in self.qr_divisors]
        found += [RecommendPointConfig(tower_prune_ratio=r, recovery_steps=steps) for r in self.tower_prune_ratios]
        if steps and len(found) > 1:
            found.insert(1, RecommendPointConfig(recovery_steps=steps))
        return list({c.key(): c for c in found if c.is_reference or c.structural or c.is_control}.values())

    def variants(self) -> list[tuple[int, float]]:
        """(bits, hot share) of each quantization variant, float first."""
        out = [(int(b), 0.0) for b in sorted(self.bits, reverse=True)]
        cold = [int(b) for b in sorted(self.bits, reverse=True) if b < HOT_BITS] or [4]
        out += [(b, float(share)) for share in self.hot_shares for b in cold]
        return out

    def units(self) -> list[RecommendUnit]:
        units = []
        for structure in self.structures():
            variants = [(32, 0.0)] if structure.is_control else self.variants()
            configs = tuple(replace(structure, embedding_bits=b, hot_share=h) for b, h in variants)
            units.append(RecommendUnit(structure, configs))
        return units + [RecommendPeerUnit((config,)) for config in self.peer_configs()]

    def peer_configs(self) -> list[RecommendPeerConfig]:
        return [peer_config(name, self.peer_grid) for name in self.peers]

    def points(self) -> list[RecommendPointConfig]:
        """The compression points (the library peers are ``peer_configs``)."""
        return [config for unit in self.units() if isinstance(unit, RecommendUnit) for config in unit.configs]

    def n_points(self) -> int:
        """Every record the sweep makes: the points and the peers."""
        return len(self.points()) + len(self.peers)

    def estimate_seconds(self) -> float:
        """A rough estimate for the synthetic demo on 2 busy cores (the baseline's training included)."""
        recovered = sum(1 for s in self.structures() if s.recovery_steps)
        peers = sum(PEER_SECONDS["implicit"] * self.peer_grid if c.library == "implicit" else PEER_SECONDS["torchrec"]
                    for c in self.peer_configs())
        return (SECONDS_ESTIMATE["train"] + self.n_points() * SECONDS_ESTIMATE["point"]
                + recovered * self.recovery_steps * SECONDS_ESTIMATE["recovery_step"] + peers)

    # -- storing it
    def to_dict(self) -> dict:
        data = {name: list(getattr(self, name)) for name in _LISTS}
        data.update(recovery_steps=int(self.recovery_steps), train=self.train.to_dict(),
                    measure=self.measure.to_dict())
        if self.peers:  # only then: a grid without peers keeps the dict (and the run id) it had before peers
            data.update(peers=list(self.peers), peer_grid=int(self.peer_grid))
        return {"kind": KIND, **data}

    @classmethod
    def from_dict(cls, data: dict) -> "RecommendSweepSpec":
        if not isinstance(data, dict):
            raise ConfigError("a recommender sweep grid is an object")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names - {"kind"})
        if unknown:
            raise ConfigError(f"unknown recommender sweep setting(s): {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_strings(cls, bits="32,8,4", hot_shares="", row_prune_ratios="", dim_prune_ratios="", ranks="",
                     qr_divisors="", tower_prune_ratios="", recovery_steps=str(DEFAULT_RECOVERY_STEPS),
                     train: RecommendTrainSettings | None = None,
                     measure: RecommendMeasureSettings | None = None, peers="",
                     peer_grid=str(DEFAULT_GRID)) -> "RecommendSweepSpec":
        """Comma lists (CLI flags, recipes), each item checked and named when it is not a number."""
        def items(text, kind, name):
            return tuple(parse_list(text, kind, name)) if str(text).strip() else ()

        steps = items(recovery_steps, int, "recovery steps") or (DEFAULT_RECOVERY_STEPS,)
        if len(steps) != 1:
            raise ConfigError("recovery steps: one budget for every structural point, not a list")
        return cls(bits=items(bits, int, "bits") or (32,), hot_shares=items(hot_shares, float, "hot shares"),
                   row_prune_ratios=items(row_prune_ratios, float, "rare-row pruning ratios"),
                   dim_prune_ratios=items(dim_prune_ratios, float, "dimension pruning ratios"),
                   ranks=items(ranks, int, "ranks"), qr_divisors=items(qr_divisors, int, "QR divisors"),
                   tower_prune_ratios=items(tower_prune_ratios, float, "tower pruning ratios"),
                   recovery_steps=int(steps[0]), train=train or RecommendTrainSettings(),
                   measure=measure or RecommendMeasureSettings(),
                   peers=tuple(p.strip() for p in str(peers).split(",") if p.strip()),
                   peer_grid=int((items(peer_grid, int, "peer grid") or (DEFAULT_GRID,))[0]))


def train_settings_from(data: dict) -> RecommendTrainSettings:
    names = {f.name for f in fields(RecommendTrainSettings)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown recommender training setting(s): {', '.join(unknown)}")
    return RecommendTrainSettings(**data)


def check_spec(spec: RecommendSweepSpec, scenario: RecommendScenario) -> None:
    """One line, before anything is trained or stored, for a grid this model or data cannot take (or whose
    library peers' libraries are not installed)."""
    require(spec.peers)
    model = spec.train.model
    if spec.tower_prune_ratios and model == "mf":
        raise ConfigError("tower pruning needs a two-tower model; matrix factorization (mf) has none: choose the "
                          "two-tower or text-two-tower model, or drop the tower ratios")
    if spec.dim_prune_ratios and model == "text-two-tower":
        raise ConfigError("dimension pruning of the text-two-tower model: its item table's dimensions are added to "
                          "the text projection's, so they cannot be dropped alone")
    for rank in spec.ranks:
        if rank >= spec.train.dim:
            raise ConfigError(f"rank {rank} is not below the embedding width {spec.train.dim}")
    smallest = min(scenario.split.n_users, scenario.split.n_items)
    for divisor in spec.qr_divisors:
        if divisor >= smallest:
            raise ConfigError(f"quotient-remainder divisor {divisor} is not below the smaller table's {smallest} "
                              "ids: nothing would be shared")


def point_key(config: RecommendPointConfig | RecommendPeerConfig, measure: RecommendMeasureSettings,
              where: str = "local") -> str:
    """A stored point's key under its baseline: the config, how it was measured, the thread count, and where
    (``ray:cpu`` for a Ray worker's CPU share: its timings are not this process's, so neither reuses the other's)."""
    content = {"recommend": config.key(), "format": POINT_FORMAT, "measure": measure.to_dict(),
               "threads": torch.get_num_threads()}
    if where != "local":
        content["where"] = where
    blob = json.dumps(content, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_id_for(baseline_key: str, spec: RecommendSweepSpec) -> str:
    blob = json.dumps({"baseline": baseline_key, "spec": spec.to_dict(), "threads": torch.get_num_threads()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def failed_record(config: RecommendPointConfig | RecommendPeerConfig, exc: BaseException) -> dict:
    record = {"kind": KIND, "quality_metric": QUALITY_METRIC, "config": config.to_dict(), "label": config.label(),
              "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000],
              "traceback": traceback.format_exc()[-4000:]}
    if isinstance(config, RecommendPeerConfig):
        record["peer"] = config.description
    return record


def point_record(model, config: RecommendPointConfig, split, measure: RecommendMeasureSettings,
                 should_stop=None) -> dict:
    """One point's record from its built model (the figures, what it is, a hash of what it stores)."""
    record = measure_recommend_point(model, split, measure, should_stop=should_stop)
    record.update({"config": config.to_dict(), "label": config.label(), "weights_sha256": weights_sha256(model),
                   "table_layout": layout(model)["tables"], "status": "ok"})
    return record


def unit_records(baseline_model, split, spec: RecommendSweepSpec, unit: RecommendUnit, skip, should_stop=None,
                 progress: Callable[[str], None] | None = None, scenario_name: str = "recommend") -> Iterator[dict]:
    """One unit's records: its structure built and recovered once, each variant quantized and measured (in this
    process, or in a Ray task: the same code); or a library peer made and measured."""
    todo = [c for c in unit.configs if c.key() not in skip]
    if not todo:
        return
    if isinstance(unit, RecommendPeerUnit):
        yield from _peer_records(baseline_model, split, spec, todo, should_stop, progress, scenario_name)
        return
    started = time.perf_counter()
    if progress is not None:
        progress(f"building {unit.structure.label()}")
    try:
        structured, notes = build_structure(baseline_model, unit.structure, split, spec.train, should_stop)
    except Cancelled:  # stopped while recovering: these points stay unmeasured, a re-run measures them
        return
    except Exception as exc:  # a structure that cannot be built fails its points, not the sweep
        for config in todo:
            yield failed_record(config, exc)
        return
    build_seconds = time.perf_counter() - started
    for config in todo:
        if should_stop is not None and should_stop():
            return
        if progress is not None:
            progress(f"measuring {config.label()}")
        t0 = time.perf_counter()
        try:
            model = quantize_model(structured, config, split)
            record = point_record(model, config, split, spec.measure, should_stop)
        except Cancelled:
            return
        except Exception as exc:
            yield failed_record(config, exc)
            continue
        record.update({"structure_notes": notes, "build_seconds": round(build_seconds, 3),
                       "seconds": round(time.perf_counter() - t0, 3), "model": spec.train.model,
                       "scenario": scenario_name, "measured_at": time.time()})
        yield record


def _peer_records(baseline_model, split, spec: RecommendSweepSpec, todo: list, should_stop, progress,
                  scenario_name: str) -> Iterator[dict]:
    for config in todo:
        if should_stop is not None and should_stop():
            return
        if progress is not None:
            progress(f"measuring {config.label()}")
        started = time.perf_counter()
        try:
            record = peer_record(baseline_model, split, config, spec.measure, seed=int(spec.train.seed),
                                 should_stop=should_stop)
        except Cancelled:
            return
        except Exception as exc:  # a peer that cannot be made fails alone
            yield failed_record(config, exc)
            continue
        record.update({"seconds": round(time.perf_counter() - started, 3),
                       "model": "mf" if config.library == "implicit" else spec.train.model,
                       "scenario": scenario_name, "measured_at": time.time()})
        yield record
