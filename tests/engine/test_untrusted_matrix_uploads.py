"""Untrusted input, class 5: uploads (more in tests/app/test_app_untrusted.py).

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

try:
    from tests.engine.test_bad_input_matrix import GOOD_CSV
except ImportError:  # pragma: no cover
    from test_bad_input_matrix import GOOD_CSV


# == 5. uploads ================================================================================================
class Upload:
    def __init__(self, name, data):
        self.name, self._data = name, data

    def getvalue(self):
        return self._data


def test_upload_partial_file_is_never_reused(home, monkeypatch):
    from ui.state import save_upload

    monkeypatch.setenv("GEMINI_HOME", str(home[0]))
    data = GOOD_CSV.encode()
    path = Path(save_upload(Upload("reviews.csv", data)))
    path.write_bytes(data[:10])  # what a full disk left behind
    assert Path(save_upload(Upload("reviews.csv", data))).read_bytes() == data
    other = Path(save_upload(Upload("reviews.csv", data + b"more,pos\n")))
    assert other != path and other.read_bytes() == data + b"more,pos\n"
    assert not list(path.parent.glob(".*tmp-*"))


def test_upload_on_a_full_disk_is_one_message_and_leaves_nothing(home, monkeypatch):
    from gemini_core.errors import GeminiError
    from ui.state import save_upload

    monkeypatch.setenv("GEMINI_HOME", str(home[0]))
    real_open = open

    def full_disk_open(file, mode="r", *args, **kwargs):
        if "w" in mode and ".tmp-" in str(file):
            handle = real_open(file, mode, *args, **kwargs)
            handle.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk_open)
    with pytest.raises(GeminiError, match="no space left on device while saving the upload 'big.csv'"):
        save_upload(Upload("big.csv", b"x,y\n" * 100))
    monkeypatch.undo()
    uploads = home[0] / "uploads"
    assert not any("big.csv" in p.name for p in uploads.iterdir())


def test_extensionless_data_is_accepted_by_content(tmp_path):
    from gemini_core.scenarios.table_data import validate_text_file

    path = tmp_path / "SMSSpamCollection"
    path.write_text("".join(f"{'ham' if i % 2 else 'spam'}\tmessage number {i} here\n" for i in range(40)))
    summary = validate_text_file(path, text_column="1", label_column="0", header="no")
    assert summary["rows"] == 40


def test_a_wide_upload_is_refused_before_it_is_parsed(home, monkeypatch):
    """The dashboard previews an upload as soon as it is saved: a table of 20,001 columns is refused from its
    first line, in one line, before pandas builds a cell of it."""
    import pandas as pd

    from gemini_core.errors import DataError
    from gemini_core.scenarios.table_data import preview
    from ui.state import save_upload

    monkeypatch.setenv("GEMINI_HOME", str(home[0]))
    header = ",".join(f"c{i}" for i in range(20_001))
    data = (header + "\n" + ",".join("1" for _ in range(20_001)) + "\n").encode()
    path = save_upload(Upload("wide.csv", data))
    parsed = []
    real = pd.read_csv
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: parsed.append(1) or real(*a, **k))
    with pytest.raises(DataError) as caught:
        preview(path)
    assert "has 20,001 columns; the limit is 10,000" in str(caught.value) and "\n" not in str(caught.value)
    assert parsed == []
    Path(path).unlink()  # the shared home keeps only what the matrix put there
