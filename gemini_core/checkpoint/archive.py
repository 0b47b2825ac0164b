"""Zipped exports: written with fixed timestamps, read only after every member was checked."""
from __future__ import annotations

import contextlib
import io
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from gemini_core.checkpoint.format import (
    MAX_UNZIPPED_BYTES,
    PICKLE_SUFFIXES,
    RECIPE_FILE,
    _relative_files,
    _safe_member,
)
from gemini_core.errors import CheckpointError
from gemini_core.scenarios.data_io import env_limit

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def _export_root(path):
    """The export folder for ``path`` (a folder, or a zip of one extracted to a temporary folder)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"no export at {str(path)!r}")
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise CheckpointError(f"{path.name} is a pickle file; gemini never loads pickles (they can run "
                                  "code). Give an export folder with recipe.json and model.safetensors")
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path.name} is neither an export folder nor a zip of one")
        with tempfile.TemporaryDirectory(prefix="gemini-export-") as tmp:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                if not any(PurePosixPath(n).name == RECIPE_FILE for n in names):
                    pickled = any(n.endswith(".pkl") for n in names)
                    raise CheckpointError(f"{path.name} is not a zip of a gemini export (no recipe.json)"
                                          + ("; it holds pickled data, which gemini never loads" if pickled else ""))
                for info in archive.infolist():
                    if not _safe_member(info.filename) or (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise CheckpointError(f"{path.name}: unsafe entry {info.filename!r} in the zip")
                unzipped = sum(info.file_size for info in archive.infolist())
                limit = env_limit("GEMINI_MAX_EXPORT_BYTES", MAX_UNZIPPED_BYTES)
                if unzipped > limit:  # a zip bomb from an untrusted sender must not fill the disk
                    raise CheckpointError(f"{path.name} would unpack to {unzipped:,} bytes, above the limit of "
                                          f"{limit:,} (GEMINI_MAX_EXPORT_BYTES changes it)")
                archive.extractall(tmp)
            root = Path(tmp)
            if not (root / RECIPE_FILE).exists():
                subdirs = [p for p in root.iterdir() if p.is_dir()]
                if len(subdirs) == 1 and (subdirs[0] / RECIPE_FILE).exists():
                    root = subdirs[0]
            yield root
        return
    yield path


def zip_export(path) -> bytes:
    """The export folder as zip bytes (one top folder, fixed timestamps: same folder, same bytes)."""
    root = Path(path).expanduser()
    if not (root / RECIPE_FILE).exists():
        raise CheckpointError(f"{root} is not a gemini export: recipe.json is missing")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rel in _relative_files(root):
            info = zipfile.ZipInfo(f"{root.name}/{rel}", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, (root / rel).read_bytes())
    return buffer.getvalue()
