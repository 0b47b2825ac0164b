"""The compress stage: ``compress(model, config, scenario) -> CompressedModel`` (prune -> recover ->
quantize -> kernels), the compressed model itself, and the codec that turns it into stored bytes."""
from gemini_core.compress.model import CompressedModel
from gemini_core.compress.pipeline import compress, prune_copy

__all__ = ["CompressedModel", "compress", "prune_copy"]
