"""The point record: what one measured (or failed) compression point holds, typed, bounded and versioned.

Every kind measures a point into one flat record; the figures every kind shares (latency, size, memory,
parameters, accuracy, perplexity, ...) are typed and bounded here, so a wrong type or an impossible value
is one ``GeminiError`` naming the field before the record is stored or written out, never a row that the
table, the charts and the recommender read wrongly later. A kind's own figures (decode speed, MACs,
runtime choice, ...) are kept as they are (``extra="allow"``).

At the API boundary a record stays a plain dict (``PointRecord.validate_dict``): the pages, the table and
the exports index records by field name, and keep doing so; the model is the schema.

Versions:
  1: every record written before records carried a version (no ``schema_version``; classifier records
     did not name their kind, LLM records had ``kind: "llm"``);
  2: ``schema_version``, ``kind`` and ``quality_metric`` in every record.

Non-finite numbers: a figure that could not be computed is NaN (an empty interval, a diverged perplexity)
and stays NaN; records are written with ``json.dumps``' defaults (``NaN``, ``Infinity``), which
``json.loads`` reads back, so stored records and JSON lines round-trip them as before. Bounds are checked
on the numbers that are not NaN.
"""
from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from gemini_core.errors import GeminiError
from gemini_core.kinds import registry
from gemini_core.kinds.registry import DEFAULT_KIND
from gemini_core.limits import MAX_BATCH

SCHEMA_VERSION = 2  # records without ``schema_version`` are version 1

MAX_TEXT = 20_000  # a label, an error message: longer is a bug, not a record


def _to_float(value):
    """Any real number but a bool (numpy floats, ints) as a float; anything else is left for the type check."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def _to_int(value):
    """Integers of any type, and floats with no fraction (a count read from older JSON), as an int."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _bounded(ge: float | None = None, le: float | None = None):
    """A bound check that lets NaN through: NaN is how a record says a figure could not be computed."""
    def check(value: float) -> float:
        if math.isnan(value):
            return value
        if ge is not None and not value >= ge:
            raise ValueError(f"must be at least {ge:g}, got {value!r}")
        if le is not None and not value <= le:
            raise ValueError(f"must be at most {le:g}, got {value!r}")
        return value
    return AfterValidator(check)


def Figure(ge: float | None = None, le: float | None = None):  # noqa: N802  (a type, named like one)
    """A measured float in [ge, le] (NaN allowed; ints and numpy floats taken as floats; strings refused)."""
    return Annotated[StrictFloat, BeforeValidator(_to_float), _bounded(ge, le)]


def Count(ge: int = 0, le: int | None = None):  # noqa: N802
    """A whole number in [ge, le] (an integral float is taken as its int; bools and strings refused)."""
    return Annotated[StrictInt, BeforeValidator(_to_int), Field(ge=ge, le=le)]


def _pair(ge: float, le: float):
    """A 95% interval: [low, high] (a tuple is taken as a list, as JSON would store it)."""
    return Annotated[list[Figure(ge, le)], BeforeValidator(lambda v: list(v) if isinstance(v, tuple) else v),
                     Field(min_length=2, max_length=2)]


Text = Annotated[StrictStr, Field(max_length=MAX_TEXT)]
Name = Annotated[StrictStr, Field(min_length=1, max_length=500)]
Millis = Figure(ge=0)
Seconds = Figure(ge=0)
Bytes = Count(ge=0)
Share = Figure(ge=0, le=1)
_MILLIS = TypeAdapter(Millis)


class PointRecord(BaseModel):
    """One point as stored and written out. Every field is optional but ``schema_version``, ``kind`` and
    ``quality_metric`` (``validate_dict`` fills those): a failed point holds its config and error only."""

    model_config = ConfigDict(extra="allow", strict=True)

    # -- what the record is
    schema_version: Annotated[StrictInt, Field(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    kind: Name  # a registered kind (``gemini_core.kinds``): classifier, llm, ...
    quality_metric: Name  # the kind's quality figure: accuracy (higher is better), perplexity (lower is better)
    status: Literal["ok", "failed"] = "ok"
    error: Text | None = None
    config: dict[str, Any] = Field(default_factory=dict)  # the kind's compression config (its own schema)
    label: Text | None = None
    peer: Text | None = None  # a library peer's description (``results.peers``): shown, never shipped
    scenario: Name | None = None
    device: Name | None = None

    # -- speed, size, memory (every kind; ``latency_ms_*`` is what the kind times: a batch, a prefill)
    latency_ms_p10: Millis | None = None
    latency_ms_p50: Millis | None = None
    latency_ms_p90: Millis | None = None
    latency_ms_min: Millis | None = None
    latency_runs: Count(ge=0) | None = None
    batch_size: Count(ge=1, le=MAX_BATCH) | None = None
    size_bytes: Bytes | None = None  # bytes the exporter writes
    ideal_size_bytes: Bytes | None = None  # a formula (estimate), labelled so
    peak_memory_bytes: Bytes | None = None
    params: Count(ge=0) | None = None
    nonzero_params: Count(ge=0) | None = None
    seconds: Seconds | None = None  # wall time of the point (compress + measure)

    # -- where it was measured
    threads: Count(ge=1) | None = None
    cores: Count(ge=1) | None = None
    load_avg_1m: Figure(ge=0) | None = None
    host: Text | None = None
    cpu: Text | None = None
    cpu_flags: list[StrictStr] | None = None

    # -- quality: accuracy on held-out examples (classifiers; zero-shot for LLMs), perplexity (LLMs)
    accuracy: Share | None = None
    accuracy_ci95: _pair(0, 1) | None = None  # Wilson 95% interval ([NaN, NaN] for no examples)
    test_n: Count(ge=0) | None = None
    test_correct: Annotated[StrictStr, Field(pattern=r"^[01]*$")] | None = None  # 1 / 0 per test example
    accuracy_delta: Figure(ge=-1, le=1) | None = None  # paired with the baseline on the same examples
    accuracy_delta_ci95: _pair(-1, 1) | None = None
    accuracy_delta_measurable: StrictBool | None = None
    mcnemar_p: Share | None = None
    paired_n: Count(ge=0) | None = None
    perplexity: Figure(ge=1) | None = None  # NaN or inf when the model diverged

    # -- added by the store
    point_id: Count(ge=1) | None = None
    run_id: Name | None = None
    point_key: Name | None = None
    baseline_key: Name | None = None
    reused: StrictBool | None = None
    reused_from: Name | None = None

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        if kind not in registry.KINDS:
            raise ValueError(f"unknown model kind {kind!r}; this version knows {', '.join(sorted(registry.KINDS))}")
        return kind

    @model_validator(mode="after")
    def _consistent(self) -> "PointRecord":
        metric = registry.KINDS[self.kind].quality_metric
        if self.quality_metric != metric:
            raise ValueError(f"field quality_metric: the quality metric of {self.kind} points is {metric!r}, "
                             f"not {self.quality_metric!r}")
        if self.test_correct is not None and self.test_n is not None and len(self.test_correct) != self.test_n:
            raise ValueError(f"field test_correct: {len(self.test_correct)} examples, but test_n is {self.test_n}")
        for name, value in (self.model_extra or {}).items():  # a kind's own latency figures are latencies too
            if name.startswith("latency_ms_") and value is not None:
                try:
                    _MILLIS.validate_python(value)
                except ValidationError as exc:
                    raise ValueError(f"field {name}: {_message(exc.errors(include_url=False)[0])}") from None
        return self

    @classmethod
    def validate_dict(cls, record: Mapping) -> dict:
        """``record`` checked against the schema and normalised, as a dict: ``schema_version`` set to the
        current version, ``kind`` and ``quality_metric`` filled when missing (see ``fill_kind``), numbers as
        Python ints and floats. A record that does not fit is one GeminiError naming the field."""
        if not isinstance(record, Mapping):
            raise GeminiError(f"a point record is a JSON object, not {type(record).__name__}")
        version = record.get("schema_version")
        version = 1 if version is None else version  # no version: written before records had one
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise GeminiError(f"point record{_named(record)}: field schema_version: {version!r} is not a version")
        if version > SCHEMA_VERSION:
            raise GeminiError(f"a point record of schema version {version} was written by a newer gemini; this "
                              f"version reads up to {SCHEMA_VERSION}: update gemini")
        filled = fill_kind(record)
        filled["schema_version"] = SCHEMA_VERSION  # a version-1 record is a version-2 one once filled
        try:
            model = cls.model_validate(filled)
        except ValidationError as exc:
            raise GeminiError(f"point record{_named(record)}: {_describe(exc)}") from None
        data = model.model_dump()
        out = {"schema_version": data.pop("schema_version"), "kind": data.pop("kind"),
               "quality_metric": data.pop("quality_metric")}
        out.update((k, data[k]) for k in filled if k in data)  # the caller's fields, in the caller's order
        return out


def legacy_kind(record: Mapping) -> str:
    """The kind of a record, for records written before records named their kind (schema version 1).

    A ``kind`` the record names wins (LLM records named themselves ``"llm"`` from the start). Without one: a
    finite perplexity and no accuracy is an LLM's record (perplexity is only an LLM's figure; an LLM point
    measured with a zero-shot set has an accuracy too, but such records always named their kind); anything
    else is a classifier's, the product's first kind. New records name their kind; this function is only the
    reader's (and, until every writer sets ``kind``, the validator's) fallback.
    """
    kind = record.get("kind")
    if isinstance(kind, str) and kind:
        return kind
    perplexity, accuracy = record.get("perplexity"), record.get("accuracy")
    if _is_finite(perplexity) and accuracy is None:
        return "llm"
    return DEFAULT_KIND


def fill_kind(record: Mapping) -> dict:
    """A copy of ``record`` with ``kind`` and ``quality_metric`` filled when missing.

    The explicit fallback for writers that do not set them yet, and for version-1 records: the kind from
    ``legacy_kind``, the quality metric from that kind's registration. Fields already present are kept (the
    validator then checks them)."""
    out = dict(record)
    if not out.get("kind"):
        out["kind"] = legacy_kind(record)
    if not out.get("quality_metric"):
        info = registry.KINDS.get(out["kind"]) if isinstance(out["kind"], str) else None
        if info is not None:
            out["quality_metric"] = info.quality_metric
    return out


def upgrade_record(record: Mapping) -> dict:
    """A version-1 record as version 2 without checking its figures (``fill_kind`` plus the version): what the
    store's migration writes, and what a read-only store of an earlier version reads in memory. Records are
    not refused here: a figure an earlier version stored is the user's data, kept as it was."""
    out = fill_kind(record)
    out["schema_version"] = SCHEMA_VERSION
    return out


def point_json(record: Mapping) -> str:
    """One record as one JSON line, through the schema (NaN and inf as ``json.dumps`` writes them)."""
    return json.dumps(PointRecord.validate_dict(record), default=float)


def _is_finite(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _named(record: Mapping) -> str:
    label = record.get("label")
    return f" {str(label)[:80]!r}" if label else ""


def _message(error: dict) -> str:
    msg = error["msg"].removeprefix("Value error, ")
    if "input" in error and error.get("type") not in ("value_error", "missing"):
        msg += f" (got {error['input']!r:.60})"
    return msg


def _describe(exc: ValidationError) -> str:
    """The first error as ``field NAME: what is wrong``, one line."""
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in error["loc"] if not _is_tag(p))
    msg = _message(error)
    if not where:  # a check across fields names its field in its message
        return msg
    return f"field {where}: {msg}"


def _is_tag(part) -> bool:
    """Union and validator tags pydantic puts in an error's location (not field names)."""
    text = str(part)
    return text in ("int", "float", "str", "bool", "list[...]", "function-after", "function-before") \
        or text.startswith(("constrained-", "nullable", "function-", "lax-", "strict-"))
