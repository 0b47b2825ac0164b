"""Reading the user's CSV / TSV files as strings, with errors that say what is wrong and how to fix it.

Policy (what this module decides for the user, and says so in ``notes``):

* Size: files over ``MAX_FILE_BYTES`` (200 MiB, the dashboard's upload limit too) are refused before
  reading; tables over ``MAX_COLUMNS`` (10,000 fields on the first line) before parsing, and parsing
  stops one row past ``MAX_ROWS`` (200,000 data rows) or past what ``MAX_CELLS`` (20,000,000 cells)
  allows at that width: pandas holds every cell as a Python string, so a file of 10^6 columns took
  minutes and gigabytes before failing, and more rows than the cap would not be trained on anyway (text
  trains on ``max_train_examples``) but would all be tokenized and held in memory.
  ``GEMINI_MAX_DATA_BYTES`` / ``_ROWS`` / ``_COLUMNS`` / ``_CELLS`` change the limits.
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

What the columns mean (labels, texts, features) is ``table_data.py``'s part.
"""
from __future__ import annotations

import codecs
import csv
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gemini_core.errors import DataError
from gemini_core.results.units import size_text

MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_ROWS = 200_000
MAX_COLUMNS = 10_000
MAX_CELLS = 20_000_000
LEGACY_NON_ASCII_SHARE = 0.10  # above this a non-UTF-8 file is probably not Windows-1252 text
SNIFF_CHARS = 64 * 1024


@dataclass
class RawTable:
    """A file read as strings, before any column is interpreted."""

    frame: pd.DataFrame  # every cell a str, or NaN where the cell was empty
    path: Path
    delimiter: str
    has_header: bool
    encoding: str
    notes: list[str] = field(default_factory=list)


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


def max_columns() -> int:
    """The column limit on data tables: ``MAX_COLUMNS`` unless ``GEMINI_MAX_DATA_COLUMNS`` says otherwise."""
    return env_limit("GEMINI_MAX_DATA_COLUMNS", MAX_COLUMNS)


def max_cells() -> int:
    """The cell limit on data tables: ``MAX_CELLS`` unless ``GEMINI_MAX_DATA_CELLS`` says otherwise."""
    return env_limit("GEMINI_MAX_DATA_CELLS", MAX_CELLS)


def _size_text(size_bytes: int) -> str:
    return size_text(size_bytes)


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


def is_number(value) -> bool:
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
        numeric_below = below.map(is_number).mean()
        if top in set(below):
            votes -= 1  # the value recurs: a data row (e.g. "ham" in a label column)
        elif numeric_below >= 0.9:
            votes += -1 if is_number(top) else 1
    return votes >= 0


def read_table(path, header="infer", max_bytes: int | None = None, row_limit: int | None = None) -> RawTable:
    """Read a delimited file as strings, with the header decided. Raises DataError."""
    path = Path(path).expanduser()
    row_limit = max_rows() if row_limit is None else row_limit
    text, encoding, notes = read_text(path, max_bytes)
    header = parse_header_option(header)
    delimiter = sniff_delimiter(path, text)
    # The table's width from its first line, and the rows that width allows, before pandas sees the file:
    # what pandas builds is one Python string per cell, whatever the file's size on disk.
    width, column_limit, cell_limit = first_line_fields(text, delimiter), max_columns(), max_cells()
    if width > column_limit:
        raise DataError(f"{path.name} has {width:,} columns; the limit is {column_limit:,} "
                        "(GEMINI_MAX_DATA_COLUMNS changes it). Keep the columns the model needs.")
    rows_allowed = min(row_limit, cell_limit // max(width, 1))
    # the header, the rows allowed, one row over (the file is too long) and one more (it is known to be)
    cells = _parse_cells(text, delimiter, path.name, nrows=rows_allowed + 3)
    read_all = len(cells) < rows_allowed + 3
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
    if len(cells) > rows_allowed:
        count = f"{len(cells):,}" if read_all else f"more than {rows_allowed:,}"
        if rows_allowed == row_limit:
            raise DataError(f"{path.name} has {count} data rows; the limit is {row_limit:,} rows. "
                            "Use a sample of the rows.")
        raise DataError(f"{path.name} has more than {cell_limit:,} cells ({width:,} columns, {count} data rows); "
                        f"the limit is {cell_limit:,} cells (GEMINI_MAX_DATA_CELLS changes it). Use a sample of the "
                        "rows, or fewer columns.")
    if header == "infer":
        shown = ", ".join(repr(c) for c in list(cells.columns)[:8])
        notes.append(f"header row detected: columns {shown}" if has_header
                     else f"no header row detected: columns are numbered 0..{cells.shape[1] - 1}")
    return RawTable(cells, path, delimiter, bool(has_header), encoding, notes)


def first_line_fields(text: str, delimiter: str) -> int:
    """Fields on the first non-blank line: the number of columns pandas makes (a longer row is its error)."""
    start = 0
    while True:
        end = text.find("\n", start)
        line = text[start:] if end < 0 else text[start:end]
        if line.strip() or end < 0:
            break
        start = end + 1
    if delimiter == "\t":  # read with QUOTE_NONE: every tab separates
        return line.count("\t") + 1
    try:  # the first record, which a quoted field may continue onto the next lines
        return len(next(csv.reader(io.StringIO(text[start:]), delimiter=delimiter), []))
    except csv.Error:  # a field over csv's size limit: count the first line's delimiters
        return line.count(delimiter) + 1


def _parse_cells(text: str, delimiter: str, name: str, nrows: int | None = None) -> pd.DataFrame:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    try:
        return pd.read_csv(io.StringIO(text), sep=delimiter, header=None, dtype=str, quoting=quoting,
                           keep_default_na=False, na_values=[""], skip_blank_lines=True, engine="c", nrows=nrows)
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

