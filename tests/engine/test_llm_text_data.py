"""Text sources and the calibration / evaluation split, which must never overlap."""
from __future__ import annotations

import json

import pytest

from gemini_core.errors import DataError
from gemini_core.kinds.llm import text_data


def test_builtin_split_is_fixed_and_disjoint():
    split = text_data.load_split()
    again = text_data.load_split(text_data.BUILTIN_TEXT)
    assert split == again
    assert len(split.evaluation) >= 10 and len(split.calibration) > len(split.evaluation)
    assert not set(split.calibration) & set(split.evaluation)
    assert sum(len(d.split()) for d in split.calibration + split.evaluation) > 40_000


def test_calibration_tokens_come_from_the_calibration_part_only(tiny_lm):
    split = text_data.load_split()
    batch = text_data.calibration_batch(tiny_lm.tokenizer, split, 4, 32)
    assert batch.shape == (4, 32)
    decoded = tiny_lm.tokenizer.decode(batch.reshape(-1).tolist())
    assert decoded in split.calibration_text()
    assert decoded not in split.evaluation_text()


def test_evaluation_ids_are_the_tail_of_the_evaluation_part(tiny_lm):
    split = text_data.load_split()
    ids = text_data.evaluation_ids(tiny_lm.tokenizer, split, 500)
    assert ids.numel() == 500
    assert split.evaluation_text().endswith(tiny_lm.tokenizer.decode(ids.tolist()))


def test_txt_jsonl_and_csv_sources(tmp_path):
    (tmp_path / "a.txt").write_text("first para\n\nsecond para\n\nthird\n\nfourth")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"body": f"row {i}"}) for i in range(8)))
    (tmp_path / "c.csv").write_text("id,review\n1,good film\n2,bad film\n3,long film\n4,fine\n")
    assert text_data.load_documents(str(tmp_path / "a.txt")) == ["first para", "second para", "third", "fourth"]
    split = text_data.load_split(str(tmp_path / "b.jsonl"), field="body")
    assert split.calibration == tuple(f"row {i}" for i in range(6))
    assert split.evaluation == ("row 6", "row 7")
    assert text_data.load_documents(str(tmp_path / "c.csv"), field="review")[1] == "bad film"


@pytest.mark.parametrize("name, content, match", [
    ("x.jsonl", '{"text": "ok"}\nnot json\n', "line 2 is not valid JSON"),
    ("x.jsonl", '{"other": "ok"}\n', "no text field"),
    ("x.csv", "a,b\n1,2\n", "no column 'text'"),
    ("x.md", "# hi", "must be .txt"),
    ("x.txt", "only one paragraph", "at least 2 documents"),
    ("x.txt", "   ", "holds no text"),
])
def test_bad_text_files_give_one_clear_error(tmp_path, name, content, match):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=match):
        text_data.load_split(str(tmp_path / name))


def test_too_little_calibration_text_is_refused(tiny_lm, tmp_path):
    (tmp_path / "s.txt").write_text("one two three\n\nfour five\n\nsix")
    split = text_data.load_split(str(tmp_path / "s.txt"))
    with pytest.raises(DataError, match="calibration part has"):
        text_data.calibration_batch(tiny_lm.tokenizer, split, 8, 128)
