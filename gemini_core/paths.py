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


def cache_dir() -> Path:
    """What the product derives once and reuses (the built-in LLM converted from its GGUF): ``GEMINI_CACHE``, or
    ``<home>/cache``. Point several homes at one ``GEMINI_CACHE`` and a fresh home starts without converting."""
    text = os.environ.get("GEMINI_CACHE", "").strip()
    path = Path(text).expanduser().resolve() if text else home_dir() / "cache"
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
    check_name_lengths(text, what)
    root = Path(root).resolve()
    candidate = Path(text).expanduser()
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    check_name_lengths(str(resolved), what)
    if root not in resolved.parents:
        where = "is the folder itself" if resolved == root else f"leads to {resolved}"
        raise ConfigError(f"the {what} {text!r} {where}; it must be a folder inside {root}")
    return resolved


# What the operating system accepts (Linux's NAME_MAX and PATH_MAX, in bytes): a longer name would make every
# later look at the path (``is_dir``, ``mkdir``) raise OSError instead of this one line.
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 4096


def check_name_lengths(text: str, what: str = "path") -> None:
    """ConfigError when a folder or file name in ``text`` is longer than the file system allows."""
    encoded = os.fsencode(text)
    if len(encoded) >= PATH_MAX_BYTES:
        raise ConfigError(f"the {what} is too long ({len(encoded):,} bytes); a path may have at most "
                          f"{PATH_MAX_BYTES - 1:,}")
    for part in encoded.split(b"/"):
        if len(part) > NAME_MAX_BYTES:
            shown = os.fsdecode(part[:24]) + "..."
            raise ConfigError(f"the {what} has a name that is too long ({shown!r}, {len(part)} bytes); a folder "
                              f"or file name may have at most {NAME_MAX_BYTES} bytes")


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
    check_name_lengths(text, what)
    resolved = Path(text).expanduser().resolve()
    roots = [Path(r).resolve() for r in roots]
    if not any(resolved == root or root in resolved.parents for root in roots):
        shown = ", ".join(str(r) for r in roots)
        raise ConfigError(f"the {what} {text!r} leads to {resolved}, outside the folders this dashboard may read "
                          f"({shown}); upload the file instead, or add its folder to GEMINI_DATA_ROOTS")
    return resolved


def typed_path_roots() -> list[Path]:
    """Where paths typed into the dashboard (or restored from its saved state) may lead: the home folder, and
    the folders in ``GEMINI_DATA_ROOTS``.

    Never anywhere: a typed path would otherwise let whoever reaches the page preview any file the
    server can read. Uploads go under the home folder, so they always work.
    """
    return [home_dir(), *data_roots()]


def check_typed_path(text: str, what: str = "path") -> str:
    """``text`` when it leads inside ``typed_path_roots()``; ConfigError naming where it leads otherwise."""
    resolve_readable(text, typed_path_roots(), what)
    return text


def is_local_source(source: str) -> bool:
    """Whether a model source names a folder on this machine rather than a hub id (``org/name``): the rule
    the hf: scenario loads by (it exists, or it is written as a path)."""
    text = str(source).strip()
    if text.startswith(("/", ".", "~")) or text.count("/") > 1:
        return True
    try:
        return bool(text) and Path(text).expanduser().exists()
    except (OSError, ValueError):  # a NUL or an over-long name: a path, which the roots check then refuses
        return True


def check_model_source(source: str, what: str = "model folder") -> str:
    """``source`` (a hub id, or a local folder inside the typed-path roots); ConfigError otherwise."""
    if is_local_source(source):
        check_typed_path(source, what)
    return source
