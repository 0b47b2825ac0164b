"""The one way the product writes a folder: build it in a temporary sibling, then move it into place.

A killed process leaves at most a ``.NAME.tmp-*`` folder (never half a baseline or export), and a
reader never finds the destination half-deleted: an old folder is moved aside before the new one
takes its name, and removed only afterwards.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_MARK = ".tmp-"  # staging folders are named ".<destination>.tmp-<random>"
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}{TMP_MARK}", dir=dest.parent))
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
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}{OLD_MARK}", dir=dest.parent))
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
