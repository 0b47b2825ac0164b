"""Adaptive training: pruning, learning rate and quantization that adapt while the model trains.

- ``settings.py``: ``AdaptiveSettings`` (checked on construction) and the choices it offers;
- ``steps.py``: the structure while training runs (structured steps measured against the starting
  widths, masks, MACs), on top of ``techniques.prune`` and the method registry;
- ``train.py``: the entry (``train_adaptive``: the cache, the seed, the epochs) and the algorithm's description;
- ``trainer.py``: one training's epochs (``Trainer``: prune, train, validate with the guard, keep the best);
- ``cache.py``: the cached result (key, write through ``fsio``, load by replaying the pruning history).
"""
from gemini_core.adaptive.cache import adaptive_key, load_adaptive_baseline, write_adaptive_baseline
from gemini_core.adaptive.settings import (
           ADAPTIVE_FORMAT,
           GUARD_ACTIONS,
           MASK_MODES,
           PRUNE_METHODS,
           QAT_BITS,
           AdaptiveSettings,
)
from gemini_core.adaptive.train import baseline_from_adaptive_description, train_adaptive
from gemini_core.training.schedules import LR_POLICIES, PRUNE_SCHEDULES

__all__ = ["ADAPTIVE_FORMAT", "GUARD_ACTIONS", "LR_POLICIES", "MASK_MODES", "PRUNE_METHODS", "PRUNE_SCHEDULES",
           "QAT_BITS", "AdaptiveSettings", "adaptive_key", "baseline_from_adaptive_description",
           "load_adaptive_baseline", "train_adaptive", "write_adaptive_baseline"]
