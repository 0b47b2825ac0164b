"""A sensitivity profile: what an analysis measured, one row per coupled group (pruning) or per layer or block
(quantization), with the quality change of compressing that row alone. Every kind's analysis fills this one
shape, so the store, the CLI table, the heatmap and the allocator read them alike.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field


@dataclass
class SensitivityProfile:
    """What the analysis measured; the page, the CLI and the allocator all read this."""

    analysis_id: str
    scenario: str
    baseline_key: str
    params: dict
    device: str
    split: str = "val"
    examples: int = 0
    baseline: dict = field(default_factory=dict)  # accuracy, loss of the unchanged model on the same examples
    pruning: list = field(default_factory=list)
    quantization: list = field(default_factory=list)
    latency: dict | None = None
    status: str = "running"  # running | complete | cancelled
    seconds: float = 0.0
    total_steps: int = 0
    done_steps: int = 0

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        return json.loads(json.dumps(data))  # a deep, JSON-clean copy (safe to read while the job appends)

    @classmethod
    def from_dict(cls, data: dict) -> "SensitivityProfile":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    # -- views ---------------------------------------------------------------------------------
    def heatmap(self, kind: str) -> tuple[list[str], list, list[list[float | None]]]:
        """(rows, columns, accuracy drop in points) for ``kind`` 'pruning' (groups x ratios) or
        'quantization' (layers x bits)."""
        entries = self.pruning if kind == "pruning" else self.quantization
        key = "ratio" if kind == "pruning" else "bits"
        columns = list(self.params["ratios"] if kind == "pruning" else self.params["bits"])
        rows, cells = [], []
        for entry in entries:
            by = {r[key]: r["drop_points"] for r in entry["results"]}
            rows.append(entry["group"] if kind == "pruning" else entry["layer"])
            cells.append([by.get(c) for c in columns])
        return rows, columns, cells

    def table(self) -> list[dict]:
        """One compact row per layer (quantization drops, latency share, outlier figure) for the CLI."""
        shares = {r["layer"]: r for r in (self.latency or {}).get("layers", [])}
        rows = []
        for entry in self.quantization:
            row = {"layer": entry["layer"], "params": entry["params"]}
            for r in entry["results"]:
                row[f"drop@{r['bits']}b"] = r["drop_points"]
            row["max|w|/std"] = entry["max_abs_over_std"]
            if entry["layer"] in shares:
                row["latency_share"] = shares[entry["layer"]]["share"]
            rows.append(row)
        return rows


def most_sensitive(profile: SensitivityProfile, count: int, row: str, change: str) -> list[dict]:
    """The ``count`` rows (layers, blocks, tables) whose quantization at the lowest profiled bit width costs the
    most, as ``{row: name, "bits": ..., change: the quality change}``: what to keep at higher precision."""
    rows = []
    for entry in profile.quantization:
        worst = min(entry["results"], key=lambda r: r["bits"]) if entry["results"] else None
        if worst is not None:
            rows.append({row: entry["layer"], "bits": worst["bits"], change: worst["drop_points"]})
    return sorted(rows, key=lambda r: -r[change])[:count]
