"""Where the engine keeps its files: one home folder (``GEMINI_HOME``, default ``./gemini_runs``)."""
from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    home = Path(os.environ.get("GEMINI_HOME", "gemini_runs")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
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
