"""Model kinds: each registers its torch-free description on import of this package (see registry.py)."""
from gemini_core.kinds import registry
from gemini_core.kinds.classifier import info as _classifier  # noqa: F401  (registers "classifier")
from gemini_core.kinds.llm import info as _llm  # noqa: F401  (registers "llm")
from gemini_core.kinds.recommend import info as _recommend  # noqa: F401  (registers "recommend")

__all__ = ["registry"]
