"""Reading user CSV/TSV files: what is accepted, and the message for each kind of bad file."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from gemini_core.errors import DataError
from gemini_core.scenarios import table_read
from gemini_core.scenarios.table_data import (
    load_feature_table,
    load_text_table,
    preview,
    resolve_column,
    validate_text_file,
)
from gemini_core.scenarios.table_read import read_table


def _shared_data_root() -> Path | None:
    candidates = [Path(__file__).resolve().parents[3] / "shared" / "data"]
    if os.environ.get("GEMINI_SHARED_DATA"):
        candidates.insert(0, Path(os.environ["GEMINI_SHARED_DATA"]))
    return next((p for p in candidates if p.is_dir()), None)


def need_shared(*parts: str) -> Path:
    root = _shared_data_root()
    path = root.joinpath(*parts) if root else None
    if path is None or not path.exists():
        pytest.skip("shared data folder (../shared/data or $GEMINI_SHARED_DATA) not present")
    return path


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(DataError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


# -- real files ------------------------------------------------------------------------------------
def test_sms_spam_headerless_tsv_with_quotes_reads_every_row():
    path = need_shared("sms_spam", "SMSSpamCollection")
    table = load_text_table(path, text_column="1", label_column=0)
    assert len(table.labels) == 5574  # quotes must not merge rows (QUOTE_NONE)
    assert table.class_names == ["ham", "spam"]
    assert table.label_counts() == {"ham": 4827, "spam": 747}
    assert table.labels.dtype == np.int64
    assert any("no header row" in note for note in table.notes)


def test_sst2_header_is_detected_and_integer_labels_sort_numerically():
    path = need_shared("sst2", "train_subset_first5000.tsv")
    summary = validate_text_file(path, "sentence", "label")
    assert summary["rows"] == 5000
    assert summary["label_counts"] == {"0": 2242, "1": 2758}
    assert summary["classes"] == ["0", "1"]


def test_columns_are_guessed_when_not_given():
    path = need_shared("sst2", "train_subset_first5000.tsv")
    table = load_text_table(path)
    assert (table.text_column, table.label_column) == ("sentence", "label")
    assert any("label column not given" in note for note in table.notes)


# -- delimiters, headers, columns ---------------------------------------------------------------
def test_csv_with_quoted_commas_and_string_labels(tmp_path):
    path = write(tmp_path, "reviews.csv", 'text,label\n"good, really",pos\nbad,neg\n"fine, ok",pos\n')
    table = load_text_table(path, "text", "label")
    assert table.text == ["good, really", "bad", "fine, ok"]
    assert table.class_names == ["neg", "pos"] and table.labels.tolist() == [1, 0, 1]


def test_delimiter_is_sniffed_without_extension(tmp_path):
    path = write(tmp_path, "data", "a;b;label\n1;2;x\n3;4;y\n5;6;x\n")
    raw = read_table(path)
    assert raw.delimiter == ";" and list(raw.frame.columns) == ["a", "b", "label"]


def test_header_option_forces_both_ways(tmp_path):
    path = write(tmp_path, "t.tsv", "text\tlabel\nhello\ta\nworld\tb\n")
    assert read_table(path, header=True).frame.shape == (2, 2)
    assert read_table(path, header="no").frame.shape == (3, 2)
    assert "header must be" in error_of(read_table, path, header="maybe")


def test_columns_by_position_and_integer(tmp_path):
    path = write(tmp_path, "t.tsv", "spam\tbuy now\nham\thi mum\nham\tsee you\n")
    table = load_text_table(path, text_column=1, label_column="0", header=False)
    assert table.text[0] == "buy now" and table.class_names == ["ham", "spam"]


def test_misspelled_column_names_the_closest(tmp_path):
    path = write(tmp_path, "t.csv", "sentence,label\nhi,a\nyo,b\n")
    message = error_of(load_text_table, path, "sentense", "label")
    assert "'sentense' not found" in message and "Did you mean 'sentence'" in message
    assert "Available columns: 'sentence', 'label'" in message


def test_same_text_and_label_column_is_refused(tmp_path):
    path = write(tmp_path, "t.csv", "sentence,label\nhi,a\nyo,b\n")
    assert "are the same" in error_of(load_text_table, path, "label", "label")


# -- bad contents -----------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    assert "does not exist" in error_of(load_text_table, tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    assert "is empty" in error_of(load_text_table, write(tmp_path, "e.csv", "  \n\n"))


def test_header_without_rows(tmp_path):
    message = error_of(load_text_table, write(tmp_path, "h.csv", "text,label\n"), header=True)
    assert "no data rows" in message


def test_binary_file_names_the_nul_byte(tmp_path):
    path = write(tmp_path, "model.csv", b"PK\x03\x04\x00\x00binary")
    assert "looks binary" in error_of(load_text_table, path)


def test_utf16_file_is_refused(tmp_path):
    path = write(tmp_path, "u16.csv", "text,label\nhi,a\n".encode("utf-16"))
    assert "UTF-16" in error_of(load_text_table, path)


def test_wrong_encoding_is_refused_with_the_offset(tmp_path):
    content = "text,label\n" + "".join(f"{'很好的电影' * 3},{i % 2}\n" for i in range(6))
    path = write(tmp_path, "gbk.csv", content.encode("gbk"))
    message = error_of(load_text_table, path)
    assert "not UTF-8" in message and "offset 11" in message and "Save the file as UTF-8" in message


def test_windows_1252_text_is_read_with_a_note(tmp_path):
    content = "text,label\ncafé crème,a\nplain,b\nnaïve,a\n"
    path = write(tmp_path, "latin.csv", content.encode("cp1252"))
    table = load_text_table(path, "text", "label")
    assert table.text[0] == "café crème"
    assert any("Windows-1252" in note for note in table.notes)


def test_file_over_the_size_cap(tmp_path):
    path = write(tmp_path, "big.csv", "text,label\n" + "x,a\n" * 1000)
    message = error_of(table_read.read_table, path, max_bytes=1024)
    assert "big.csv is 3.92 KB; the limit is 1.00 KB" in message


def test_nan_labels_are_counted(tmp_path):
    path = write(tmp_path, "t.csv", "text,label\na,x\nb,\nc,y\nd,\n")
    message = error_of(load_text_table, path, "text", "label")
    assert "empty on 2 of 4 rows" in message and "data rows 2, 4" in message


def test_single_class(tmp_path):
    path = write(tmp_path, "t.csv", "text,label\na,x\nb,x\nc,x\n")
    assert "single class ('x')" in error_of(load_text_table, path, "text", "label")


def test_text_column_used_as_label_is_caught(tmp_path):
    rows = "".join(f"message number {i},{i % 2}\n" for i in range(30))
    path = write(tmp_path, "t.csv", "text,label\n" + rows)
    assert "different values in 30 rows" in error_of(load_text_table, path, "label", "text")


def test_empty_text_rows_are_dropped_with_a_note(tmp_path):
    path = write(tmp_path, "t.tsv", "text\tlabel\nhello\ta\n \tb\nworld\tb\n\ta\n")
    table = load_text_table(path, "text", "label", header=True)
    assert table.text == ["hello", "world"]
    assert any("dropped 2 rows with empty text" in note for note in table.notes)


def test_all_text_empty_is_an_error(tmp_path):
    path = write(tmp_path, "t.csv", "text,label,other\n,a,1\n,b,2\n")
    assert "empty on every row" in error_of(load_text_table, path, "text", "label")


def test_ragged_rows_name_the_line(tmp_path):
    path = write(tmp_path, "t.csv", "text,label\na,x\nb,y,extra,more\n")
    message = error_of(load_text_table, path, "text", "label")
    assert "could not be read as comma-separated" in message and "line 3" in message


# -- dashboard helpers ---------------------------------------------------------------------------
def test_preview_gives_head_columns_and_counts(tmp_path):
    path = write(tmp_path, "t.csv", "text,label\n" + "".join(f"row {i},{'ab'[i % 2]}\n" for i in range(30)))
    head, columns, counts, notes = preview(path, rows=5, label_column="label")
    assert len(head) == 5 and columns == ["text", "label"] and counts == {"a": 15, "b": 15}
    assert preview(path).label_counts is None


def test_resolve_column_is_case_insensitive(tmp_path):
    raw = read_table(write(tmp_path, "t.csv", "Text,Label\na,b\n"), header=True)
    assert resolve_column(raw.frame, "label", "label") == "Label"


def test_feature_table_keeps_other_columns(tmp_path):
    path = write(tmp_path, "t.csv", "age,city,label\n30,Oslo,y\n40,Rome,n\n")
    table = load_feature_table(path, "label")
    assert list(table.features.columns) == ["age", "city"] and table.class_names == ["n", "y"]
