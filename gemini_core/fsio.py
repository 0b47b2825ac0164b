"""The one way the product writes a folder: build it in a temporary sibling, then move it into place.

A killed process leaves at most a ``.NAME.tmp-*`` folder (never half a baseline or export), and a
reader never finds the destination half-deleted: an old folder is moved aside before the new one
takes its name, and removed only afterwards.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_MARK = ".tmp-"  # staging folders are named ".<destination>.tmp-<pid>-<random>"
OLD_MARK = ".old-"  # a replaced folder waits under ".<destination>.old-<random>" until the swap is done


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def staging_folder(dest: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``dest``; removed again if the block raises."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}{TMP_MARK}{os.getpid()}-", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; what we publish is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_folder(tmp: Path, dest: Path, replace: bool) -> bool:
    """Move the finished ``tmp`` to ``dest``; True when it is now there.

    ``replace``: an existing ``dest`` is swapped out (restored if the move fails). Without it, an
    existing ``dest`` wins (another process published first): ``tmp`` is removed and False returned.
    """
    tmp, dest = Path(tmp), Path(dest)
    if replace and dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}{OLD_MARK}{os.getpid()}-", dir=dest.parent))
        try:
            os.replace(dest, old / "x")
        except FileNotFoundError:  # another process replaced it meanwhile
            pass
        try:
            os.replace(tmp, dest)
        except BaseException:
            if (old / "x").exists() and not dest.exists():
                os.replace(old / "x", dest)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
        return True
    try:
        os.replace(tmp, dest)
        return True
    except OSError:
        if not dest.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return False


def write_file_atomic(path: Path, blob: bytes) -> None:
    """``blob`` to ``path`` through a temporary sibling: a reader sees the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def explain_os_error(exc: OSError, doing: str) -> str | None:
    """One line for a file-system failure a user can act on (full disk, read-only, no permission), else None."""
    import errno

    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on device while {doing}{where}; free some space and run it again "
                "(nothing half-written was kept)")
    if exc.errno == errno.EROFS:
        return f"the home folder is read-only: cannot write while {doing}{where}; set GEMINI_HOME to a writable folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied while {doing}{where}"
    return None


def _writer_alive(name: str) -> bool:
    """Is the process whose pid follows the mark in ``name`` still running (so its folder is in use)?"""
    for mark in (TMP_MARK, OLD_MARK):
        if mark in name:
            digits = name.split(mark, 1)[1].split("-", 1)[0]
            if not digits.isdigit():
                return False  # an older name without a pid: left by a process long gone
            pid = int(digits)
            if pid == os.getpid():
                return True
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except OSError:
                return True
            return True
    return False


def clean_stale(folder: Path) -> list[Path]:
    """Remove ``.NAME.tmp-*`` / ``.NAME.old-*`` entries in ``folder`` left by processes that are gone.

    The writer's pid is part of the name; entries of a live process stay. Returns what was removed;
    a folder that cannot be listed is left alone.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not is_staging_name(entry.name) or _writer_alive(entry.name):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed


def is_staging_name(name: str) -> bool:
    """A temporary name of this module (``.x.tmp-*`` or ``.x.old-*``): never shown as a real folder."""
    return name.startswith(".") and (TMP_MARK in name or OLD_MARK in name)


def sha256_file(path: Path) -> str:
    """SHA-256 of a regular file, opened without following a link (and without blocking on a pipe): the one
    checksum of exports, shipped baselines and cached conversions."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(f"{Path(path).name} is not a regular file")
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
