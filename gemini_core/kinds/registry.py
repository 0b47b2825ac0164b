"""Model kinds by name: what a kind is, in data every door can read without loading torch.

A kind (classifier, causal LM, ...) is one folder ``kinds/<name>/`` holding everything only it knows. Its
``info.py`` registers a ``KindInfo`` here (torch-free: the pages, the report and the points table read it);
its ``engine.py`` (named by ``engine_module``, imported on first use) is what the shared sweep, retime,
sensitivity, export and evaluate call. Nothing outside a kind's folder asks which kind it holds: it asks
the kind.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gemini_core.errors import GeminiError

# A record written before records named their kind is a classifier's: the first kind the product had.
DEFAULT_KIND = "classifier"


@dataclass(frozen=True)
class Column:
    """A column of the points table as the reader sees it: record field, heading (with its unit), format."""

    name: str
    heading: str
    fmt: str = "{:.3g}"
    scale: float = 1.0


@dataclass(frozen=True)
class KindInfo:
    name: str  # stored in every record and run ("classifier", "llm")
    label: str  # one line for pickers and headings
    sweep_noun: str  # "a classifier sweep": what a run of this kind is called in a sentence
    model_noun: str  # "a classifier": the model of this kind in a sentence
    quality_metric: str  # a name in results.metrics (accuracy, perplexity, ...)
    engine_module: str  # dotted module implementing the engine (imports torch): loaded on first use
    config_columns: Callable[[Mapping], dict]  # a point's config -> the table's shared columns
    is_reference: Callable[[Mapping], bool]  # the uncompressed reference row (every ratio is against it)
    is_control: Callable[[Mapping], bool] = lambda row: False  # the recovered-but-uncompressed control
    latency_heading: str = "latency p50 (ms)"  # what ``latency_ms_p50`` times for this kind
    size_heading: str = "size (bytes written)"
    extra_columns: tuple[Column, ...] = ()  # the kind's own measured figures, after the shared ones
    scenarios: tuple[str, ...] = field(default=())  # scenario names that build this kind
    scenario_module: str | None = None  # where the kind registers scenarios of its own (loaded when listed)
    trains_baseline: bool = False  # True: a baseline is trained (and cached) before compressing; else loaded
    allocates_from_profile: bool = False  # True: a sensitivity profile drives the per-layer allocator
    recipe_section: str | None = None  # an export's recipe.json must hold this object for this kind
    # the columns of ``points --table``
    cli_table_fields: tuple[str, ...] = ("point_id", "label", "latency_ms_p50", "size_bytes", "warnings")


KINDS: dict[str, KindInfo] = {}


def register_kind(info: KindInfo) -> KindInfo:
    KINDS[info.name] = info
    return info


def kind_info(name: str | None) -> KindInfo:
    """The registered kind ``name`` (None: the default kind of records that predate the field)."""
    name = name or DEFAULT_KIND
    if name not in KINDS:
        raise GeminiError(f"unknown model kind {name!r}; this version knows {', '.join(sorted(KINDS))}")
    return KINDS[name]


def kind_of(record: Mapping | None) -> KindInfo:
    """The kind of a stored record, run spec or export recipe (its ``kind`` field)."""
    return kind_info((record or {}).get("kind"))


def kind_of_records(records) -> KindInfo:
    """The kind of a set of records (a run's points share one); the default kind for none."""
    rows = records.to_dict("records") if hasattr(records, "to_dict") else list(records)
    names = {r.get("kind") or DEFAULT_KIND for r in rows}
    if len(names) > 1:
        raise GeminiError(f"points of several kinds ({', '.join(sorted(names))}) cannot share one table")
    return kind_info(names.pop() if names else None)


def kind_for_scenario(scenario: str) -> KindInfo:
    """The kind a scenario builds (the kind that lists it; the default kind otherwise)."""
    for info in KINDS.values():
        if scenario in info.scenarios:
            return info
    return kind_info(None)


def engine(kind: str | KindInfo | None):
    """The kind's engine module (imports torch)."""
    info = kind if isinstance(kind, KindInfo) else kind_info(kind)
    return importlib.import_module(info.engine_module)


def load_engines() -> None:
    """Import every kind's engine: the doors that list scenarios call it first (a kind's scenarios, such as the
    causal LM's, register as its engine loads)."""
    for info in list(KINDS.values()):
        engine(info)
