"""Which point to ship: a default suggestion (Report page, bench) and ``recommend`` under user constraints
(the Overview and Sweep pages, ``points RUN --recommend``, the report)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping

import pandas as pd

from gemini_core.errors import ConfigError
from gemini_core.results.pareto import finite
from gemini_core.results.table import ok_points, reference_row

# With no bound given, an LLM point may raise perplexity by at most this much (percent) over the fp32 model.
LLM_DEFAULT_INCREASE_PCT = 5.0


def is_llm_frame(df: pd.DataFrame) -> bool:
    return "perplexity" in df.columns and bool(pd.to_numeric(df["perplexity"], errors="coerce").notna().any())


def suggest_point(df: pd.DataFrame, max_drop_pts: float = 1.0):
    """A sensible default choice: on the front, at most ``max_drop_pts`` accuracy lost, not slower than
    the reference when such a point exists, and the best size x speed gain among those. Falls back to the
    reference row. None if nothing is measured."""
    pts = ok_points(df)
    if pts.empty:
        return None
    if is_llm_frame(pts):  # perplexity: at most LLM_DEFAULT_INCREASE_PCT higher than the uncompressed model
        cands = pts[pts["pareto"] & (pts["perplexity_increase_pct"] <= LLM_DEFAULT_INCREASE_PCT) & ~pts["is_reference"]]
    else:
        cands = pts[pts["pareto"] & (pts["accuracy_delta_pts"] >= -max_drop_pts) & ~pts["is_reference"]]
    faster = cands[cands["speedup"] >= 1.0]
    if len(faster):  # a suggestion that is slower than the baseline surprises people: only if nothing else
        cands = faster
    if cands.empty:
        return reference_row(df) if reference_row(df) is not None else pts.iloc[0]
    score = cands["compression"] * cands["speedup"]
    return cands.loc[score.idxmax()]


# -- "Which point should I ship?": constraints in, one recommended point and the reason out ------------
@dataclass(frozen=True)
class Constraints:
    """What the shipped point must meet. Every bound is optional (None = no bound).

    ``min_accuracy_pct``: test accuracy in percent; ``max_loss_pts``: accuracy lost against the dense
    fp32 reference in percentage points; ``max_latency_ms``: p50 latency per batch; ``max_size_kb``:
    checkpoint size.
    """

    min_accuracy_pct: float | None = None
    max_loss_pts: float | None = None
    max_latency_ms: float | None = None
    max_size_kb: float | None = None
    # LLM runs: perplexity may rise by at most this many percent over the uncompressed model.
    max_perplexity_increase_pct: float | None = None

    def __post_init__(self):
        for name in ("min_accuracy_pct", "max_loss_pts", "max_latency_ms", "max_size_kb",
                     "max_perplexity_increase_pct"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{name} must be a number, not {value!r}") from None
            if not math.isfinite(number) or number < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, not {value!r}")
            if name == "min_accuracy_pct" and number > 100:
                raise ConfigError(f"min_accuracy_pct is a percentage (0-100), not {value!r}")
            if name in ("max_latency_ms", "max_size_kb") and number == 0:
                raise ConfigError(f"{name} must be above 0 (leave it out for no bound)")
            object.__setattr__(self, name, number)

    @property
    def accuracy_bound(self) -> bool:
        return self.min_accuracy_pct is not None or self.max_loss_pts is not None \
            or self.max_perplexity_increase_pct is not None

    def any(self) -> bool:
        return any(v is not None for v in (self.min_accuracy_pct, self.max_loss_pts, self.max_latency_ms,
                                           self.max_size_kb, self.max_perplexity_increase_pct))

    def describe(self) -> str:
        parts = []
        if self.min_accuracy_pct is not None:
            parts.append(f"accuracy ≥ {self.min_accuracy_pct:g}%")
        if self.max_loss_pts is not None:
            parts.append(f"accuracy loss ≤ {self.max_loss_pts:g} points")
        if self.max_perplexity_increase_pct is not None:
            parts.append(f"perplexity at most {self.max_perplexity_increase_pct:g}% above fp32")
        if self.max_latency_ms is not None:
            parts.append(f"latency p50 ≤ {self.max_latency_ms:g} ms")
        if self.max_size_kb is not None:
            parts.append(f"size ≤ {self.max_size_kb:g} KB")
        return ", ".join(parts) or "no constraints"

    def misses(self, row: Mapping) -> dict[str, float]:
        """How far ``row`` is from each bound it breaks, as a share of the bound (0 = met). A missing
        figure counts as a full miss."""
        out: dict[str, float] = {}

        def check(name, value, bound, below: bool):
            if bound is None:
                return
            if not finite(value):
                out[name] = 1.0
                return
            gap = (float(bound) - float(value)) if below else (float(value) - float(bound))
            if gap > 1e-9:
                out[name] = gap / max(abs(float(bound)), 1e-9)

        acc_pct = row.get("accuracy") * 100.0 if finite(row.get("accuracy")) else None
        check("accuracy", acc_pct, self.min_accuracy_pct, below=True)
        loss = -float(row["accuracy_delta_pts"]) if finite(row.get("accuracy_delta_pts")) else None
        check("accuracy loss", loss, self.max_loss_pts, below=False)
        check("perplexity increase", row.get("perplexity_increase_pct"), self.max_perplexity_increase_pct,
              below=False)
        check("latency", row.get("latency_ms_p50"), self.max_latency_ms, below=False)
        check("size", row.get("size_kb"), self.max_size_kb, below=False)
        return out


@dataclass
class Recommendation:
    """The point to ship under some constraints: ``point`` (a row of the points table as a dict, None when
    no point meets them), ``reason`` (one or two plain sentences), how many points met the constraints,
    ``alternatives`` (up to two other feasible points: the most accurate and the fastest) and, when nothing
    meets them, ``closest`` (the point that misses by least) with what it misses."""

    constraints: Constraints
    point: dict | None
    reason: str
    feasible: int
    total: int
    alternatives: list[dict] = field(default_factory=list)
    closest: dict | None = None
    misses: dict[str, float] = field(default_factory=dict)

    @property
    def point_id(self) -> int | None:
        return int(self.point["point_id"]) if self.point is not None else None

    def to_dict(self) -> dict:
        def small(row):  # NaN (no accuracy on an LLM point, no perplexity on a classifier's) becomes null
            return None if row is None else {k: (None if isinstance(row.get(k), float) and row.get(k) != row.get(k)
                                                 else row.get(k)) for k in (
                "point_id", "label", "accuracy", "accuracy_delta_pts", "perplexity", "perplexity_increase_pct",
                "latency_ms_p50", "size_kb", "speedup", "compression")}
        return {"recommended_point_id": self.point_id, "reason": self.reason, "constraints": asdict(self.constraints),
                "feasible": self.feasible, "total": self.total, "recommended": small(self.point),
                "alternatives": [small(a) for a in self.alternatives], "closest": small(self.closest),
                "misses": self.misses}


def _gain(pts: pd.DataFrame) -> pd.Series:
    """Size x speed gain against the reference; without a reference, 1 / (latency x size)."""
    gain = pts["compression"] * pts["speedup"]
    if gain.notna().any():
        return gain.fillna(0.0)
    return 1.0 / (pts["latency_ms_p50"] * pts["size_kb"])


def _figures(row: Mapping) -> str:
    if finite(row.get("perplexity")):
        parts = [f"perplexity {row['perplexity']:.3f}"]
        if finite(row.get("perplexity_increase_pct")):
            parts[0] += f" ({row['perplexity_increase_pct']:+.1f}% vs fp32; lower is better)"
        parts += [f"prefill p50 {row['latency_ms_p50']:.3g} ms", f"size {row['size_kb']:.1f} KB"]
        return ", ".join(parts)
    parts = [f"accuracy {row['accuracy'] * 100:.2f}%"]
    if finite(row.get("accuracy_delta_pts")):
        parts[0] += f" ({row['accuracy_delta_pts']:+.2f} points vs dense fp32)"
    parts.append(f"latency p50 {row['latency_ms_p50']:.3g} ms")
    parts.append(f"size {row['size_kb']:.1f} KB")
    return ", ".join(parts)


def _gains(row: Mapping) -> str:
    if not (finite(row.get("compression")) and finite(row.get("speedup"))):
        return ""
    speed = (f"{row['speedup']:.2f}x faster" if row["speedup"] >= 1 else
             f"{1 / row['speedup']:.2f}x SLOWER")
    return f" ({row['compression']:.1f}x smaller and {speed} than dense fp32)"


def _better(row: Mapping, llm: bool) -> float:
    """Sort key, smaller is better: perplexity for an LLM point, minus accuracy otherwise."""
    return float(row["perplexity"]) if llm else -float(row["accuracy"])


def recommend(df: pd.DataFrame, constraints: Constraints | None = None) -> Recommendation:
    """The point to ship: among the measured points that meet every bound of ``constraints``,

    - with an accuracy bound: the largest size x speed gain against the dense fp32 reference (the
      accuracy bound already says how much accuracy may be spent; ties go to the more accurate);
    - without one: the most accurate (ties go to the larger gain).

    With no constraints at all it behaves as an accuracy loss of at most 1 point. Nothing feasible:
    ``point`` is None and ``closest`` is the point with the smallest summed relative miss.
    """
    constraints = constraints or Constraints()
    llm = is_llm_frame(df)
    quality = "perplexity" if llm else "accuracy"
    if llm and not finite(pd.to_numeric(df["accuracy"], errors="coerce").max()) and (
            constraints.min_accuracy_pct is not None or constraints.max_loss_pts is not None):
        # An LLM run without zero-shot accuracy: an accuracy bound cannot be met; perplexity stands in.
        constraints = Constraints(max_latency_ms=constraints.max_latency_ms, max_size_kb=constraints.max_size_kb,
                                  max_perplexity_increase_pct=constraints.max_perplexity_increase_pct
                                  or LLM_DEFAULT_INCREASE_PCT)
    if not constraints.any():
        constraints = Constraints(max_perplexity_increase_pct=LLM_DEFAULT_INCREASE_PCT) if llm \
            else Constraints(max_loss_pts=1.0)
    pts = ok_points(df)
    pts = pts[pts[quality].map(finite) & pts["latency_ms_p50"].map(finite) & pts["size_kb"].map(finite)] \
        if len(pts) else pts
    total = len(pts)
    if total == 0:
        return Recommendation(constraints, None, "No measured points yet.", 0, 0)
    rows = pts.to_dict("records")
    misses = [constraints.misses(r) for r in rows]
    feasible = pts[[not m for m in misses]]
    if feasible.empty:
        i = min(range(total), key=lambda k: (sum(misses[k].values()), _better(rows[k], llm)))
        near = rows[i]
        what = ", ".join(f"{name} by {share * 100:.0f}%" for name, share in misses[i].items())
        reason = (f"No point meets {constraints.describe()}. The closest is #{int(near['point_id'])} "
                  f"({near.get('label')}): {_figures(near)}; it misses {what}. Relax a bound or sweep more settings.")
        return Recommendation(constraints, None, reason, 0, total, closest=near, misses=misses[i])
    gain = _gain(feasible)
    acc = -feasible["perplexity"] if llm else feasible["accuracy"]  # higher is better on both
    if constraints.accuracy_bound:
        order = sorted(feasible.index, key=lambda k: (-gain[k], -acc[k], feasible.at[k, "point_id"]))
        why = "the largest size × speed gain"
    else:
        order = sorted(feasible.index, key=lambda k: (-acc[k], -gain[k], feasible.at[k, "point_id"]))
        why = "the lowest perplexity" if llm else "the most accurate"
    best = feasible.loc[order[0]].to_dict()
    reason = (f"Ship point #{int(best['point_id'])} ({best.get('label')}): {_figures(best)}{_gains(best)}. "
              f"Of the {len(feasible)} of {total} measured points that meet {constraints.describe()}, "
              f"it has {why}.")
    alternatives = []
    others = feasible.drop(index=order[0])
    if len(others):
        most_accurate = others.loc[sorted(others.index, key=lambda k: (-acc[k], -gain[k]))[0]].to_dict()
        alternatives.append(most_accurate)
        rest = others.drop(index=[k for k in others.index if others.at[k, "point_id"] == most_accurate["point_id"]])
        if len(rest):
            fastest = rest.loc[rest["latency_ms_p50"].astype(float).idxmin()].to_dict()
            alternatives.append(fastest)
    return Recommendation(constraints, best, reason, len(feasible), total, alternatives=alternatives)


def compare_points(df: pd.DataFrame, point_ids) -> pd.DataFrame:
    """Two to four points side by side: one column per point, one row per figure, readable values."""
    ids = [int(p) for p in point_ids]
    if not 2 <= len(ids) <= 4:
        raise ConfigError(f"compare two to four points, not {len(ids)}")
    rows = {int(r["point_id"]): r for r in df.to_dict("records")}
    missing = [p for p in ids if p not in rows]
    if missing:
        raise ConfigError(f"point(s) {', '.join(map(str, missing))} are not in this run")
    fields = [("configuration", lambda r: r.get("label")),
              ("accuracy (%)", lambda r: _num(r.get("accuracy"), 100, "{:.2f}")),
              ("Δ accuracy vs dense fp32 (points)", lambda r: _num(r.get("accuracy_delta_pts"), 1, "{:+.2f}")),
              ("latency p50 (ms)", lambda r: _num(r.get("latency_ms_p50"), 1, "{:.3f}")),
              ("speed-up vs dense fp32", lambda r: _num(r.get("speedup"), 1, "{:.2f}x")),
              ("size (KB)", lambda r: _num(r.get("size_kb"), 1, "{:.1f}")),
              ("smaller vs dense fp32", lambda r: _num(r.get("compression"), 1, "{:.2f}x")),
              ("prune", lambda r: f"{r.get('prune_method')} {_num(r.get('prune_ratio'), 1, '{:.2f}')}"),
              ("fine-tune steps", lambda r: _num(r.get("finetune_steps"), 1, "{:.0f}")),
              ("bits", lambda r: _num(r.get("bits"), 1, "{:.0f}")),
              ("execution", lambda r: r.get("execution")),
              ("on the accuracy/latency/size front", lambda r: "yes" if r.get("pareto") else "no")]
    table = {f"#{p}": [fn(rows[p]) for _, fn in fields] for p in ids}
    return pd.DataFrame(table, index=[name for name, _ in fields])


def _num(value, scale, fmt) -> str:
    return fmt.format(float(value) * scale) if finite(value) else "–"


def alternatives(df: pd.DataFrame, point_id: int, n: int = 2) -> list[dict]:
    """Two points to set beside a chosen one: the most accurate other point, and the fastest other point on
    the accuracy/latency/size front within 5 accuracy points of the chosen one (distinct, never the chosen
    point or the reference)."""
    pts = ok_points(df)
    if pts.empty:
        return []
    others = pts[(pts["point_id"] != point_id) & ~pts["is_reference"].astype(bool)]
    others = others[others["accuracy"].map(finite) & others["latency_ms_p50"].map(finite)]
    out: list[dict] = []
    if len(others):
        out.append(others.loc[others["accuracy"].astype(float).idxmax()].to_dict())
        chosen = pts[pts["point_id"] == point_id]
        floor = float(chosen["accuracy"].iloc[0]) - 0.05 if len(chosen) and finite(chosen["accuracy"].iloc[0]) else 0
        front = others[others["pareto"].astype(bool) & (others["point_id"] != out[0]["point_id"])
                       & (others["accuracy"].astype(float) >= floor)]
        if len(front):
            out.append(front.loc[front["latency_ms_p50"].astype(float).idxmin()].to_dict())
    return out[:n]
