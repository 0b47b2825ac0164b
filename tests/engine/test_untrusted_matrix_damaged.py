"""Untrusted input, class 7: damaged files (zips, exports, .npz, images).

Part of the untrusted-input matrix; the cases' contract and the shared home are in
``untrusted_support.py`` and ``conftest.py``."""
from __future__ import annotations

import numpy as np
import pytest

try:
    from tests.engine.untrusted_support import run_cli
except ImportError:  # pragma: no cover
    from untrusted_support import run_cli


# == 7. damaged files ==========================================================================================
DAMAGED = [
    ("zip-bad-crc", ["evaluate", "{d}/bad_crc.zip"], "bad_crc.zip is a damaged zip"),
    ("zip-encrypted", ["evaluate", "{d}/encrypted.zip"], "is encrypted"),
    ("zip-unknown-method", ["evaluate", "{d}/method99.zip"], "uses compression method 99"),
    ("zip-truncated", ["evaluate", "{d}/truncated.zip"], "neither an export folder nor a zip"),
    ("zip-empty", ["evaluate", "{d}/empty.zip"], "is empty"),
    ("export-truncated-safetensors", ["evaluate", "{d}/trunc_export"], "model.safetensors cannot be decoded"),
    ("npz-0-d", ["sweep", "--scenario", "images", "--data", "{d}/zero_d.npz"], "x has shape ()"),
    ("npz-not-a-zip", ["sweep", "--scenario", "images", "--data", "{d}/not_zip.npz"], "is not an .npz file"),
    ("npz-truncated", ["sweep", "--scenario", "images", "--data", "{d}/truncated.npz"], "is not an .npz file"),
    ("npz-renamed-npy", ["sweep", "--scenario", "images", "--data", "{d}/renamed_npy.npz"], "is not an .npz file"),
    ("images-unreadable", ["sweep", "--scenario", "images", "--data", "{d}/broken_images"], "has readable images in 0 class folder(s)"),
]


@pytest.mark.parametrize("case_id, argv, message", DAMAGED, ids=[c[0] for c in DAMAGED])
def test_damaged_files(case_id, argv, message, home, d, monkeypatch, capsys):
    line = run_cli([a.format(d=d) for a in argv], home[0], monkeypatch, capsys, home[1])
    assert message in line, line


def _complex_npz(path, y_complex=False):
    """Complex images (real labels), or real images with complex labels."""
    x = np.random.default_rng(0).random((20, 8, 8))
    y = np.arange(20) % 2
    if y_complex:
        np.savez(path, x=x.astype(np.float32), y=y.astype(np.complex128))
    else:
        np.savez(path, x=(x + 1j).astype(np.complex64), y=y)
    return path


# Complex numbers have no pixel meaning: casting them to float32 drops the imaginary part without a word.
COMPLEX = [
    ("npz-complex-x", lambda t: _complex_npz(t / "complex.npz"), "complex.npz: x holds complex numbers (complex64)"),
    ("npz-complex-y", lambda t: _complex_npz(t / "labels.npz", y_complex=True),
     "labels.npz: y holds complex numbers (complex128)"),
]


@pytest.mark.parametrize("case_id, make, message", COMPLEX, ids=[c[0] for c in COMPLEX])
def test_complex_npz_is_refused(case_id, make, message, home, tmp_path, monkeypatch, capsys):
    line = run_cli(["sweep", "--scenario", "images", "--data", str(make(tmp_path))], home[0], monkeypatch, capsys,
                   home[1])
    assert message in line, line
