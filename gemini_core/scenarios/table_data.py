"""From a table read as strings (``table_read.py``) to what a scenario trains on: columns, labels, texts.

Policy (what this module decides for the user, and says so in ``notes``):

* Columns are named by header name or by 0-based position (``1`` or ``"1"``); headerless files
  get the names ``"0"``, ``"1"``, ...
* Labels: empty label cells are an error (with the rows); string or integer labels are sorted
  (numerically when they are all integers) and mapped to 0..C-1; fewer than 2 classes is an error.
* Text: rows with empty text are dropped and counted in ``notes``; all empty is an error. Long
  texts are kept whole here, with a note counting those over ``LONG_TEXT_CHARS``: the tokenizer
  keeps the first ``max_length`` tokens of every text (the text scenario notes how many it cut).
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from gemini_core.errors import DataError
from gemini_core.scenarios.table_read import is_number, read_table

LONG_TEXT_CHARS = 10_000  # far beyond any max_length in tokens: such a text is surely cut
LABEL_COLUMN_NAMES = ("label", "labels", "class", "target", "y", "category")
MISSING_MARKERS = {"", "na", "n/a", "nan", "null", "none", "?"}  # tabular features only
MISSING_LABELS = ("nan", "null")  # a label cell holding these is missing, like an empty one
_INT_RE = re.compile(r"^[+-]?\d+(\.0*)?$")


@dataclass
class TableData:
    """Rows ready for a scenario: the inputs (text or features), integer labels and class names."""

    frame: pd.DataFrame  # the rows kept, as read
    labels: np.ndarray  # int64 in 0..C-1
    class_names: list[str]
    label_column: str
    text: list[str] | None = None
    text_column: str | None = None
    features: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    def label_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}


class Preview(NamedTuple):
    head: pd.DataFrame
    columns: list[str]
    label_counts: dict[str, int] | None
    notes: list[str]


# -- columns -------------------------------------------------------------------------------------
def resolve_column(frame: pd.DataFrame, spec, role: str) -> str:
    """The column named (or numbered, from 0) by ``spec``; DataError with a suggestion if absent."""
    columns = [str(c) for c in frame.columns]
    key = str(spec).strip()
    if key in columns:
        return key
    folded = [c for c in columns if c.strip().lower() == key.lower()]
    if len(folded) == 1:
        return folded[0]
    if re.fullmatch(r"\d+", key) and int(key) < len(columns):
        return columns[int(key)]
    close = difflib.get_close_matches(key, columns, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(repr(c) for c in columns[:30])
    raise DataError(f"{role} column {key!r} not found.{hint} Available columns: {listed} "
                    f"(or a position 0..{len(columns) - 1})")


def guess_label_column(frame: pd.DataFrame, exclude: str | None = None) -> str:
    """A column named like a label, else the one with the fewest distinct values."""
    candidates = [c for c in frame.columns if c != exclude]
    if not candidates:
        raise DataError("the file has a single column: it needs a text (or feature) column and a label column")
    for column in candidates:
        if column.strip().lower() in LABEL_COLUMN_NAMES:
            return column
    return min(candidates, key=lambda c: (frame[c].nunique(dropna=True), candidates.index(c)))


def guess_text_column(frame: pd.DataFrame, exclude: str | None = None) -> str:
    """The column with the longest texts on average."""
    candidates = [c for c in frame.columns if c != exclude]
    if not candidates:
        raise DataError("the file has a single column: it needs a text column and a label column")
    return max(candidates, key=lambda c: frame[c].dropna().astype(str).str.len().mean() or 0.0)


def _row_list(positions, limit: int = 5) -> str:
    shown = ", ".join(str(int(p) + 1) for p in positions[:limit])
    return shown + (", ..." if len(positions) > limit else "")


# -- labels ----------------------------------------------------------------------------------
def encode_labels(values: pd.Series, column: str, notes: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Map labels to 0..C-1 (classes sorted; numerically when all are integers)."""
    stripped = values.astype(str).str.strip()
    # "NaN" / "null" are what pandas and SQL exports write for a missing value, never a class name.
    missing = values.isna().to_numpy() | (stripped == "").to_numpy() | \
        stripped.str.lower().isin(MISSING_LABELS).to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)
        raise DataError(f"label column {column!r} is empty on {len(rows)} of {len(values)} rows "
                        f"(data rows {_row_list(rows)}; NaN and null count as empty); fill or remove those rows")
    names = values.astype(str).str.strip()
    if names.map(lambda v: bool(_INT_RE.match(v))).all():
        names = names.map(lambda v: str(int(float(v))))
        class_names = sorted(set(names), key=int)
    else:
        class_names = sorted(set(names))
    _check_classes(class_names, len(values), column)
    index = {name: i for i, name in enumerate(class_names)}
    labels = names.map(index).to_numpy(dtype=np.int64)
    small = [name for name, count in zip(class_names, np.bincount(labels)) if count < 3]
    if small and notes is not None:
        notes.append(f"classes with fewer than 3 examples ({', '.join(small[:5])}): splits are not stratified")
    return labels, class_names


def _check_classes(class_names: list[str], rows: int, column: str) -> None:
    if len(class_names) < 2:
        only = repr(class_names[0]) if class_names else "none"
        raise DataError(f"label column {column!r} has a single class ({only}); classification needs "
                        "at least 2 classes")
    if rows >= 20 and (len(class_names) > 1000 or len(class_names) > 0.5 * rows):
        raise DataError(f"label column {column!r} has {len(class_names)} different values in {rows} rows: "
                        "is it the text column or a numeric target? Pick a column of class labels")


def map_labels(values: pd.Series, class_names: list[str], column: str, file_name: str) -> np.ndarray:
    """Labels of a second file (a test file) in the classes of the first."""
    labels, names = encode_labels(values, column)
    unknown = sorted(set(names) - set(class_names))
    if unknown:
        raise DataError(f"{file_name} has labels the training file does not: {', '.join(unknown[:10])}")
    remap = np.array([class_names.index(name) for name in names], dtype=np.int64)
    return remap[labels]


# -- whole tables ----------------------------------------------------------------------------------
def load_text_table(path, text_column=None, label_column=None, header="infer",
                    max_bytes: int | None = None) -> TableData:
    """Texts and labels from a CSV/TSV file. Columns default to guesses, reported in ``notes``."""
    raw = read_table(path, header, max_bytes)
    frame, notes = raw.frame, list(raw.notes)
    text_col, label_col = _text_and_label_columns(frame, text_column, label_column, notes)
    text = frame[text_col]
    empty = (text.isna() | (text.fillna("").str.strip() == "")).to_numpy()
    if empty.all():
        raise DataError(f"text column {text_col!r} of {raw.path.name} is empty on every row")
    if empty.any():
        notes.append(f"dropped {int(empty.sum())} rows with empty text (data rows {_row_list(np.flatnonzero(empty))})")
        frame = frame.loc[~empty].reset_index(drop=True)
    labels, class_names = encode_labels(frame[label_col], label_col, notes)
    lengths = frame[text_col].str.len()
    long_rows = np.flatnonzero((lengths > LONG_TEXT_CHARS).to_numpy())
    if len(long_rows):
        notes.append(f"{len(long_rows)} texts are longer than {LONG_TEXT_CHARS:,} characters (longest "
                     f"{int(lengths.max()):,}, data rows {_row_list(long_rows)}); kept, but the tokenizer "
                     "keeps only the first max_length tokens of each")
    if frame[text_col].map(is_number).mean() > 0.9:
        notes.append(f"text column {text_col!r} holds numbers: is it the label column?")
    return TableData(frame, labels, class_names, label_col, text=frame[text_col].tolist(),
                     text_column=text_col, notes=notes)


def _text_and_label_columns(frame: pd.DataFrame, text_column, label_column, notes: list[str]) -> tuple[str, str]:
    label_col = resolve_column(frame, label_column, "label") if label_column is not None else None
    text_col = resolve_column(frame, text_column, "text") if text_column is not None else None
    if label_col is None:
        label_col = guess_label_column(frame, exclude=text_col)
        notes.append(f"label column not given; using {label_col!r}")
    if text_col is None:
        text_col = guess_text_column(frame, exclude=label_col)
        notes.append(f"text column not given; using {text_col!r}")
    if text_col == label_col:
        raise DataError(f"the text column and the label column are the same ({text_col!r})")
    return text_col, label_col


def load_feature_table(path, label_column=None, header="infer", max_bytes: int | None = None) -> TableData:
    """Feature columns (every column but the label, still as strings) and labels."""
    raw = read_table(path, header, max_bytes)
    frame, notes = raw.frame, list(raw.notes)
    if frame.shape[1] < 2:
        raise DataError(f"{raw.path.name} has a single column: it needs feature columns and a label column")
    if label_column is None:
        label_col = guess_label_column(frame)
        notes.append(f"label column not given; using {label_col!r}")
    else:
        label_col = resolve_column(frame, label_column, "label")
    labels, class_names = encode_labels(frame[label_col], label_col, notes)
    features = frame.drop(columns=[label_col])
    return TableData(frame, labels, class_names, label_col, features=features, notes=notes)


# -- dashboard helpers --------------------------------------------------------------------------
def preview(path, rows: int = 20, label_column=None, header="infer") -> Preview:
    """First rows, column names, label counts (when a label column is given) and notes."""
    raw = read_table(path, header)
    counts = None
    notes = list(raw.notes)
    if label_column is not None:
        column = resolve_column(raw.frame, label_column, "label")
        counts = {str(k): int(v) for k, v in raw.frame[column].fillna("(empty)").value_counts().items()}
    return Preview(raw.frame.head(rows), [str(c) for c in raw.frame.columns], counts, notes)


def validate_text_file(path, text_column=None, label_column=None, header="infer") -> dict:
    """A summary of what the text scenario would train on, or DataError."""
    table = load_text_table(path, text_column, label_column, header)
    lengths = pd.Series(table.text).str.len()
    return {
        "rows": len(table.labels),
        "text_column": table.text_column,
        "label_column": table.label_column,
        "classes": table.class_names,
        "label_counts": table.label_counts(),
        "text_chars_mean": float(lengths.mean()),
        "text_chars_max": int(lengths.max()),
        "notes": table.notes,
    }


UNSET_VALUES = {"header": "infer"}  # a data option's default, as a CLI passes it when the flag is absent


def refuse_unused_options(scenario: str, other: dict) -> None:
    """DataError for options given a value that this scenario does not use (None/''/defaults are ignored)."""
    given = [k for k, v in other.items() if v is not None and v != "" and UNSET_VALUES.get(k) != v]
    if given:
        raise DataError(f"the {scenario} scenario does not use {', '.join(given)}; remove "
                        f"{'it' if len(given) == 1 else 'them'}")


MIN_ROWS = 10  # fewer cannot be split into train, validation and test


def require_rows(count: int, what: str = "rows") -> None:
    if count < MIN_ROWS:
        raise DataError(f"only {count} {what}: at least {MIN_ROWS} are needed to split into train, "
                        "validation and test")


def split_or_error(split_fn, *args, **kwargs):
    """Run a train/val/test split; sklearn's complaints (too few rows per class) become DataError."""
    try:
        return split_fn(*args, **kwargs)
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(f"cannot split the data into train, validation and test: {exc}. Add rows, "
                        "or merge classes that have very few examples") from None
