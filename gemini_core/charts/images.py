"""Chart export: PNG through kaleido (one persistent Chromium per process) and standalone HTML."""
from __future__ import annotations

import os
import shutil
import warnings

import plotly.graph_objects as go


def chromium_path() -> str | None:
    env = os.environ.get("BROWSER_PATH")
    if env and os.path.exists(env):
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def png_unavailable_reason() -> str | None:
    """None when PNG export can work here, else a sentence saying what is missing."""
    try:
        import kaleido  # noqa: F401  (optional: only PNG export needs it)
    except ImportError:
        return "PNG export needs the kaleido package (pip install kaleido); the HTML charts still work."
    if chromium_path() is None:
        return ("PNG export needs a Chromium browser for kaleido (e.g. apt-get install chromium); "
                "the HTML charts still work.")
    return None


_PNG_SERVER = {"started": False}


def start_png_server() -> bool:
    """Start kaleido's persistent Chromium once per process (then ~0.2 s per image)."""
    if png_unavailable_reason() is not None:
        return False
    if _PNG_SERVER["started"]:
        return True
    import kaleido  # optional dependency, checked above

    try:
        kaleido.start_sync_server(n=1, mathjax=False, timeout=60, silence_warnings=True)
    except Exception:  # already running, or cannot start: images then start a browser each
        pass
    _PNG_SERVER["started"] = True
    return True


def figure_png(fig: go.Figure, width: int = 1100, height: int = 500, scale: int = 2) -> bytes:
    """PNG bytes of ``fig`` via kaleido (raises RuntimeError with the reason when it cannot)."""
    reason = png_unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    start_png_server()
    with warnings.catch_warnings():  # plotly warns that options are ignored when a server runs
        warnings.simplefilter("ignore", UserWarning)
        return fig.to_image(format="png", width=width, height=height, scale=scale)


def figure_html(fig: go.Figure, include_plotlyjs=True) -> str:
    """A standalone HTML page of one interactive chart (plotly.js inlined: works offline)."""
    return fig.to_html(full_html=True, include_plotlyjs=include_plotlyjs)


def all_charts_html(figs: dict, title: str) -> str:
    """Every chart of ``figs`` in one HTML page (plotly.js inlined once: works offline)."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"]
    for i, fig in enumerate(figs.values()):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts.append("</body></html>")
    return "\n".join(parts)
