"""Gemini Compression Studio engine: scenarios, compression, measurement, sweeps, store, export."""
import os

__version__ = "0.1.0"

# Keep the profiler (used for CPU memory figures) from printing start/stop lines to stderr.
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

# -- export / load (gemini_core/export.py), imported on first use so `import gemini_core` stays light --
_EXPORT_NAMES = ("load", "load_export", "export_compressed", "export_point", "evaluate_export", "zip_export")


def __getattr__(name):
    if name in _EXPORT_NAMES:
        from gemini_core.checkpoint import export

        return getattr(export, name)
    raise AttributeError(f"module 'gemini_core' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORT_NAMES))
