"""Zipped exports: written with fixed timestamps, read only after every member was checked."""
from __future__ import annotations

import contextlib
import io
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from gemini_core.checkpoint.format import (
    MAX_UNZIPPED_BYTES,
    PICKLE_SUFFIXES,
    RECIPE_FILE,
    _relative_files,
    _safe_member,
)
from gemini_core.errors import CheckpointError
from gemini_core.scenarios.table_read import env_limit

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def _export_root(path):
    """The export folder for ``path`` (a folder, or a zip of one extracted to a temporary folder)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"no export at {str(path)!r}")
    if not path.is_file() and not path.is_dir():
        raise CheckpointError(f"{str(path)!r} is not an export folder or a zip file (a device, pipe or socket)")
    if path.is_file():
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path.name} is empty; give an export folder or its .zip")
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise CheckpointError(f"{path.name} is a pickle file; gemini never loads pickles (they can run "
                                  "code). Give an export folder with recipe.json and model.safetensors")
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path.name} is neither an export folder nor a zip of one")
        with tempfile.TemporaryDirectory(prefix="gemini-export-") as tmp:
            try:
                with zipfile.ZipFile(path) as archive:
                    _check_members(path.name, archive)
                    archive.extractall(tmp)
            except CheckpointError:
                raise
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError,
                    zlib.error, ValueError) as exc:
                raise CheckpointError(f"{path.name} is a damaged zip: {str(exc).splitlines()[0][:200]}") from None
            root = Path(tmp)
            if not (root / RECIPE_FILE).exists():
                subdirs = [p for p in root.iterdir() if p.is_dir()]
                if len(subdirs) == 1 and (subdirs[0] / RECIPE_FILE).exists():
                    root = subdirs[0]
            yield root
        return
    yield path


MAX_MEMBERS = 10_000  # an export has a handful of files; GEMINI_MAX_EXPORT_MEMBERS changes it
MAX_MEMBER_BYTES = 4 * 1024 ** 3  # one file of an export; GEMINI_MAX_EXPORT_MEMBER_BYTES changes it
MAX_RATIO = 200  # weights do not deflate 200-fold; a member that does is a zip bomb
KNOWN_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def _check_members(name: str, archive: zipfile.ZipFile) -> None:
    """Refuse a zip before extracting anything: too many members, a member too large or too compressible,
    encrypted or unknown-method members, unsafe paths, a missing recipe, a total above the limit."""
    infos = archive.infolist()
    limit_members = env_limit("GEMINI_MAX_EXPORT_MEMBERS", MAX_MEMBERS)
    if len(infos) > limit_members:
        raise CheckpointError(f"{name} holds {len(infos):,} files, above the limit of {limit_members:,} "
                              "(GEMINI_MAX_EXPORT_MEMBERS changes it)")
    names = [info.filename for info in infos]
    if not any(PurePosixPath(n).name == RECIPE_FILE for n in names):
        pickled = any(n.endswith(".pkl") for n in names)
        raise CheckpointError(f"{name} is not a zip of a gemini export (no recipe.json)"
                              + ("; it holds pickled data, which gemini never loads" if pickled else ""))
    member_limit = env_limit("GEMINI_MAX_EXPORT_MEMBER_BYTES", MAX_MEMBER_BYTES)
    for info in infos:
        if not _safe_member(info.filename) or (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise CheckpointError(f"{name}: unsafe entry {info.filename!r} in the zip")
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{name}: {info.filename!r} is encrypted; exports are never encrypted")
        if info.compress_type not in KNOWN_METHODS:
            raise CheckpointError(f"{name}: {info.filename!r} uses compression method {info.compress_type}; "
                                  "exports use stored or deflate only")
        if info.file_size > member_limit:
            raise CheckpointError(f"{name}: {info.filename!r} would unpack to {info.file_size:,} bytes, above the "
                                  f"limit of {member_limit:,} (GEMINI_MAX_EXPORT_MEMBER_BYTES changes it)")
        if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise CheckpointError(f"{name}: {info.filename!r} unpacks {ratio:,.0f}-fold: a zip bomb, refused")
    unzipped = sum(info.file_size for info in infos)
    limit = env_limit("GEMINI_MAX_EXPORT_BYTES", MAX_UNZIPPED_BYTES)
    if unzipped > limit:  # a zip bomb from an untrusted sender must not fill the disk
        raise CheckpointError(f"{name} would unpack to {unzipped:,} bytes, above the limit of "
                              f"{limit:,} (GEMINI_MAX_EXPORT_BYTES changes it)")


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
