"""Gemini Compression Studio engine: scenarios, compression, measurement, sweeps, store, export.

Folders are the stages a point goes through (see docs/architecture.md)::

    scenarios -> training -> techniques -> runtimes -> compress -> measure -> results / workflows -> checkpoint
"""
import os

from gemini_core.version import package_version

__version__ = package_version()

# Keep the profiler (used for CPU memory figures) from printing start/stop lines to stderr.
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

# -- export / load, imported on first use so `import gemini_core` stays light (torch, transformers) --
_EXPORT_NAMES = {"load": "gemini_core.checkpoint.load", "load_export": "gemini_core.checkpoint.load",
                 "zip_export": "gemini_core.checkpoint.archive", "export_compressed": "gemini_core.workflows.export",
                 "export_point": "gemini_core.workflows.export", "evaluate_export": "gemini_core.workflows.export"}


def __getattr__(name):
    if name in _EXPORT_NAMES:
        import importlib  # deferred: these pull in torch and the whole engine

        return getattr(importlib.import_module(_EXPORT_NAMES[name]), name)
    raise AttributeError(f"module 'gemini_core' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORT_NAMES))
