"""Reading the user's CSV / TSV files, with errors that say what is wrong and how to fix it.

Policy (what this module decides for the user, and says so in ``notes``):

* Size: files over ``MAX_FILE_BYTES`` (200 MiB, the dashboard's upload limit too) are refused before
  reading, and tables over ``MAX_ROWS`` (200,000 data rows) after parsing: more rows than that would
  not be trained on anyway (text trains on ``max_train_examples``) but would all be tokenized and
  held in memory. ``GEMINI_MAX_DATA_BYTES`` / ``GEMINI_MAX_DATA_ROWS`` change the limits.
* Bytes: a NUL byte means a binary (or UTF-16) file: refused. A UTF-16/32 byte-order mark: refused.
* Encoding: UTF-8 (a BOM is allowed). A file that is not UTF-8 is read as Windows-1252 (a superset
  of Latin-1's printable characters, the usual "ANSI" export of Excel) *only if* it decodes and at
  most ``LEGACY_NON_ASCII_SHARE`` of its characters are non-ASCII, i.e. it is mostly ASCII text with
  a few accented letters. Anything else (GBK, Shift-JIS, random bytes) is refused with the offset of
  the first byte that is not UTF-8, because guessing would silently feed the model mojibake.
* Delimiter: ``.tsv``/``.tab`` -> tab, ``.csv`` -> comma, otherwise sniffed (tab, comma, ``;``, ``|``).
  Tab-separated files are always read with ``quoting=csv.QUOTE_NONE``: quotes in text (SMS Spam
  Collection, SST-2) are literal characters, and honouring them silently merges rows.
* Header: ``header=True|False|"infer"``. "infer" looks at the first row: a value that also occurs
  further down its column means data (e.g. ``ham``); a word on top of a numeric column means a
  header (e.g. ``label`` over 0/1). With no evidence either way the first row is a header.
* Columns are named by header name or by 0-based position (``1`` or ``"1"``); headerless files
  get the names ``"0"``, ``"1"``, ...
* Labels: empty label cells are an error (with the rows); string or integer labels are sorted
  (numerically when they are all integers) and mapped to 0..C-1; fewer than 2 classes is an error.
* Text: rows with empty text are dropped and counted in ``notes``; all empty is an error. Long
  texts are kept whole here, with a note counting those over ``LONG_TEXT_CHARS``: the tokenizer
  keeps the first ``max_length`` tokens of every text (the text scenario notes how many it cut).
"""
from __future__ import annotations

import codecs
import csv
import difflib
import io
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from gemini_core.errors import DataError

MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_ROWS = 200_000
LONG_TEXT_CHARS = 10_000  # far beyond any max_length in tokens: such a text is surely cut
LEGACY_NON_ASCII_SHARE = 0.10  # above this a non-UTF-8 file is probably not Windows-1252 text
SNIFF_CHARS = 64 * 1024
LABEL_COLUMN_NAMES = ("label", "labels", "class", "target", "y", "category")
MISSING_MARKERS = {"", "na", "n/a", "nan", "null", "none", "?"}  # tabular features only
MISSING_LABELS = ("nan", "null")  # a label cell holding these is missing, like an empty one
_INT_RE = re.compile(r"^[+-]?\d+(\.0*)?$")


@dataclass
class RawTable:
    """A file read as strings, before any column is interpreted."""

    frame: pd.DataFrame  # every cell a str, or NaN where the cell was empty
    path: Path
    delimiter: str
    has_header: bool
    encoding: str
    notes: list[str] = field(default_factory=list)


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


# -- bytes and text ----------------------------------------------------------------------------
def env_limit(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        limit = int(value)
    except ValueError:
        raise DataError(f"{name}={value!r} is not a whole number") from None
    if limit < 1:
        raise DataError(f"{name}={value!r} must be at least 1")
    return limit


def max_file_bytes() -> int:
    """The byte limit on data files: ``MAX_FILE_BYTES`` unless ``GEMINI_MAX_DATA_BYTES`` says otherwise."""
    return env_limit("GEMINI_MAX_DATA_BYTES", MAX_FILE_BYTES)


def max_rows() -> int:
    """The row limit on data tables: ``MAX_ROWS`` unless ``GEMINI_MAX_DATA_ROWS`` says otherwise."""
    return env_limit("GEMINI_MAX_DATA_ROWS", MAX_ROWS)


def _size_text(size_bytes: int) -> str:
    if size_bytes >= 1024 * 1024:
        return f"{size_bytes / 1024 / 1024:.1f} MB"
    return f"{size_bytes / 1024:.1f} KB" if size_bytes >= 1024 else f"{size_bytes} bytes"


def refuse_special(path) -> None:
    """DataError unless ``path`` is a regular file or a folder: a device (/dev/zero), a FIFO (blocks forever)
    or a socket is never opened as data."""
    import stat

    try:
        mode = Path(path).stat().st_mode
    except OSError as exc:
        raise DataError(f"{str(path)!r} cannot be read: {exc.strerror or exc}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device file")
        raise DataError(f"{str(path)!r} is {kind}, not a data file; refused")


def read_text(path, max_bytes: int | None = None) -> tuple[str, str, list[str]]:
    """The file's text, the encoding used and notes. Raises DataError naming the problem."""
    max_bytes = max_file_bytes() if max_bytes is None else max_bytes
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data file {str(path)!r} does not exist")
    if path.is_dir():
        raise DataError(f"{str(path)!r} is a folder; give a CSV or TSV file")
    refuse_special(path)
    size_bytes = path.stat().st_size
    if size_bytes > max_bytes:
        raise DataError(f"{path.name} is {_size_text(size_bytes)}; the limit is {_size_text(max_bytes)}. "
                        "Use a sample of the rows.")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path.name} is empty")
    _refuse_binary(raw, path.name)
    return _decode(raw, path.name)


def _refuse_binary(raw: bytes, name: str) -> None:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise DataError(f"{name} is UTF-16/UTF-32 encoded; save it as UTF-8 (CSV UTF-8 in Excel)")
    nul_at = raw.find(b"\x00")
    if nul_at >= 0:
        raise DataError(f"{name} looks binary, not text: it has a NUL byte at offset {nul_at} "
                        "(is it an Excel, zip or UTF-16 file? export it as UTF-8 CSV)")


def _decode(raw: bytes, name: str) -> tuple[str, str, list[str]]:
    try:
        return raw.decode("utf-8-sig"), "utf-8", []
    except UnicodeDecodeError as exc:
        bad_at = exc.start
    line = raw.count(b"\n", 0, bad_at) + 1
    where = f"byte 0x{raw[bad_at]:02x} at offset {bad_at} (line {line})"
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        non_ascii_share = sum(ord(c) > 127 for c in text) / max(len(text), 1)
        if non_ascii_share <= LEGACY_NON_ASCII_SHARE:
            return text, "cp1252", [f"{name} is not UTF-8 ({where}); read it as Windows-1252 (Latin-1)"]
    raise DataError(f"{name} is not UTF-8 text: {where} is not valid UTF-8, and it does not read as "
                    "Windows-1252/Latin-1 text either. Save the file as UTF-8.")


# -- delimiter and header ------------------------------------------------------------------------
def sniff_delimiter(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        return "\t"
    if suffix == ".csv":
        return ","
    sample = text[:SNIFF_CHARS]
    try:
        return csv.Sniffer().sniff(sample, delimiters="\t,;|").delimiter
    except csv.Error:
        return _most_consistent_delimiter(sample)


def _most_consistent_delimiter(sample: str) -> str:
    """The delimiter that occurs the same number of times on most lines (tab wins ties)."""
    lines = [line for line in sample.splitlines()[:50] if line.strip()]
    best, best_share = "\t", 0.0
    for delimiter in ("\t", ",", ";", "|"):
        counts = Counter(line.count(delimiter) for line in lines)
        count, lines_with_count = counts.most_common(1)[0] if counts else (0, 0)
        share = lines_with_count / max(len(lines), 1) if count > 0 else 0.0
        if share > best_share:
            best, best_share = delimiter, share
    return best


def parse_header_option(header) -> bool | str:
    """``True``, ``False`` or ``"infer"`` from a bool or a CLI / form string."""
    if header is None or isinstance(header, bool):
        return "infer" if header is None else header
    text = str(header).strip().lower()
    if text in ("infer", "auto", ""):
        return "infer"
    if text in ("true", "yes", "1", "y"):
        return True
    if text in ("false", "no", "0", "n", "none"):
        return False
    raise DataError(f"header must be 'infer', yes or no, not {header!r}")


def _is_number(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
        return True
    except ValueError:
        return False


def infer_header(cells: pd.DataFrame, sample_rows: int = 200) -> bool:
    """Guess whether the first row of a headerless parse is a header (see module docstring)."""
    if len(cells) < 2:
        return True
    first, rest = cells.iloc[0], cells.iloc[1:sample_rows]
    votes = 0
    for column in cells.columns:
        top = first[column]
        below = rest[column].dropna()
        if not isinstance(top, str) or below.empty:
            continue
        numeric_below = below.map(_is_number).mean()
        if top in set(below):
            votes -= 1  # the value recurs: a data row (e.g. "ham" in a label column)
        elif numeric_below >= 0.9:
            votes += -1 if _is_number(top) else 1
    return votes >= 0


def read_table(path, header="infer", max_bytes: int | None = None, row_limit: int | None = None) -> RawTable:
    """Read a delimited file as strings, with the header decided. Raises DataError."""
    path = Path(path).expanduser()
    row_limit = max_rows() if row_limit is None else row_limit
    text, encoding, notes = read_text(path, max_bytes)
    header = parse_header_option(header)
    delimiter = sniff_delimiter(path, text)
    cells = _parse_cells(text, delimiter, path.name)
    has_header = infer_header(cells) if header == "infer" else header
    if has_header:
        columns = _unique_names([c if isinstance(c, str) and c.strip() else str(i)
                                 for i, c in enumerate(cells.iloc[0])], notes)
        cells = cells.iloc[1:].reset_index(drop=True)
        cells.columns = columns
    else:
        cells.columns = [str(i) for i in range(cells.shape[1])]
    if cells.empty:
        raise DataError(f"{path.name} has a header row but no data rows")
    if len(cells) > row_limit:
        raise DataError(f"{path.name} has {len(cells):,} data rows; the limit is {row_limit:,} rows. "
                        "Use a sample of the rows.")
    if header == "infer":
        shown = ", ".join(repr(c) for c in list(cells.columns)[:8])
        notes.append(f"header row detected: columns {shown}" if has_header
                     else f"no header row detected: columns are numbered 0..{cells.shape[1] - 1}")
    return RawTable(cells, path, delimiter, bool(has_header), encoding, notes)


def _parse_cells(text: str, delimiter: str, name: str) -> pd.DataFrame:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    try:
        return pd.read_csv(io.StringIO(text), sep=delimiter, header=None, dtype=str, quoting=quoting,
                           keep_default_na=False, na_values=[""], skip_blank_lines=True, engine="c")
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} has no rows") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise DataError(f"{name} could not be read as {_delimiter_name(delimiter)}-separated values: "
                        f"{detail}") from None


def _delimiter_name(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}.get(delimiter, repr(delimiter))


def _unique_names(names: list[str], notes: list[str]) -> list[str]:
    seen: Counter = Counter()
    unique = []
    for name in names:
        name = name.strip()
        unique.append(name if not seen[name] else f"{name}.{seen[name]}")
        seen[name] += 1
    if len(set(names)) != len(names):
        notes.append("duplicate column names were numbered (name.1, name.2, ...)")
    return unique


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
    if frame[text_col].map(_is_number).mean() > 0.9:
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
