"""Where the engine keeps its files: one home folder (``GEMINI_HOME``, default ``./gemini_runs``)."""
from __future__ import annotations

import os
from pathlib import Path

from gemini_core.errors import ConfigError


def home_dir() -> Path:
    home = Path(os.environ.get("GEMINI_HOME", "gemini_runs")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def check_home_writable() -> Path:
    """The home folder, or ConfigError when it cannot be written (read-only disk, no permission)."""
    try:
        home = home_dir()
    except OSError as exc:
        raise ConfigError(f"the home folder {os.environ.get('GEMINI_HOME', 'gemini_runs')!r} cannot be created: "
                          f"{exc.strerror or exc}") from None
    if not os.access(home, os.W_OK):
        raise ConfigError(f"the home folder {home} is read-only; set GEMINI_HOME to a writable folder")
    return home


def baselines_dir() -> Path:
    path = home_dir() / "baselines"
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_path() -> Path:
    return home_dir() / "gemini.sqlite"


def exports_dir() -> Path:
    path = home_dir() / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path



def resolve_inside(path, root: Path, what: str = "path") -> Path:
    """``path`` resolved (``~``, ``..`` and symlinks followed) if it lies strictly below ``root``.

    A relative path is taken from ``root``. Raises ConfigError otherwise, naming where it leads:
    what the dashboard writes stays under the home folder, whoever types the path.
    """
    text = str(path).strip()
    if not text:
        raise ConfigError(f"the {what} is empty")
    if "\x00" in text:
        raise ConfigError(f"the {what} {text!r} contains a NUL character")
    root = Path(root).resolve()
    candidate = Path(text).expanduser()
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if root not in resolved.parents:
        where = "is the folder itself" if resolved == root else f"leads to {resolved}"
        raise ConfigError(f"the {what} {text!r} {where}; it must be a folder inside {root}")
    return resolved


def export_destination(path) -> Path:
    """A dashboard export folder: a name (or relative path) inside ``<home>/exports``, nothing else."""
    return resolve_inside(path, exports_dir(), "export folder")


def data_roots() -> list[Path]:
    """Folders listed in ``GEMINI_DATA_ROOTS`` (separated by ``os.pathsep``), resolved."""
    text = os.environ.get("GEMINI_DATA_ROOTS", "")
    return [Path(part).expanduser().resolve() for part in text.split(os.pathsep) if part.strip()]


def resolve_readable(path, roots: list[Path], what: str = "path") -> Path:
    """``path`` resolved as it would be opened (from the working folder, ``..`` and symlinks followed),
    if it is one of ``roots`` or lies below one. Raises ConfigError naming where it leads otherwise."""
    text = str(path).strip()
    if "\x00" in text:
        raise ConfigError(f"the {what} {text!r} contains a NUL character")
    resolved = Path(text).expanduser().resolve()
    roots = [Path(r).resolve() for r in roots]
    if not any(resolved == root or root in resolved.parents for root in roots):
        shown = ", ".join(str(r) for r in roots)
        raise ConfigError(f"the {what} {text!r} leads to {resolved}, outside the folders this dashboard may read "
                          f"({shown}); upload the file instead, or add its folder to GEMINI_DATA_ROOTS")
    return resolved
