"""The product's version, read from the installed package's metadata (``pyproject.toml``)."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

DIST_NAME = "gemini-compression-studio"


def package_version() -> str:
    """The installed version; from a source checkout that was never installed, pyproject's version."""
    try:
        return metadata.version(DIST_NAME)
    except metadata.PackageNotFoundError:
        return _pyproject_version() or "0+unknown"


def _pyproject_version() -> str | None:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        import tomllib

        return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]
    except (OSError, KeyError, ValueError):
        return None
