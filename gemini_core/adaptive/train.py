"""Adaptive training: a learning rate and a structure that adapt while the model trains.

``train_adaptive(scenario, AdaptiveSettings(...))`` trains (from scratch, or on from a baseline)
with, per epoch:

1. a pruning step when the schedule (``schedules.PruneSchedule``: cubic as in Zhu and Gupta, or
   linear) asks for a higher ratio: structured through torch-pruning (channels, neurons, heads
   physically removed, the ratio measured against the widths the training started with; see
   ``steps.py``), and/or an unstructured magnitude or 2:4 mask kept applied while training;
2. one epoch of training (AdamW; the learning rate from ``schedules.make_lr_policy``);
3. validation. When the epoch's pruning step cost more than ``tolerance`` validation accuracy, the
   guard either rolls the step back (``guard="rollback"``: the model from before the step is
   restored; the schedule goes on) or slows it (``guard="slow"``: restored, and the next step goes
   only half as far, the rest of the schedule pushed back an epoch);
4. once the structure is final: the best validation checkpoint is kept, and training stops early
   after ``patience`` epochs without improvement.

With ``qat_bits`` the weights are fake-quantized (``techniques/qat.py``, straight-through
estimator) from ``qat_start_epoch`` on, so the model learns the weights the quantizer will store.

The optimizer is re-created after every structural step (parameters change shape); the learning
rate policy keeps its state on its own shadow optimizer. Progress arrives as ``ProgressEvent``s
(``start``, ``step``, ``prune``, ``rollback``, ``epoch``, ``early_stop``, ``cached``), so the
dashboard draws it live and the CLI prints it; ``should_stop`` cancels (``Cancelled``, nothing cached).

The result is a ``training.loop.Baseline``: cached under ``baselines_dir()`` (``cache.py``) with a
key over the scenario, data, settings and starting point, with the pruning history in its
``meta.json`` so loading it rebuilds the pruned architecture. Sweeps and exports take it like any
other baseline.

Reproducible: the whole training runs under ``training.loop.reproducible`` (deterministic
algorithms, a private random state seeded with ``settings.seed``, ``settings.threads`` CPU threads),
so the same scenario, data, settings and seed give the same weights bit for bit at any caller thread
count, as the plain baseline does.

Distributed: inside a ``torch.distributed`` process group (see ``training/distributed.py``) the
same call trains with DistributedDataParallel. Every global batch is split across ranks and each
rank's loss is its share of the global batch's mean, so the averaged gradient is the single-process
one in exact arithmetic. Not in floating point, and not for BatchNorm: each rank normalises with its
half-batch's statistics, and gradients are summed in another order. So a world size of N gives other
weights than one process; the cache key holds the world size, and rank 0's result repeats bit for
bit for the same world size, whatever the threads each worker was started with. Pruning steps
happen identically on every rank (same weights, buffers synchronised from rank 0, same decisions
from all-reduced validation figures); rank 0 alone writes the cache and reports progress.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gemini_core.adaptive.cache import adaptive_key, load_adaptive_baseline, write_adaptive_baseline
from gemini_core.adaptive.settings import AdaptiveSettings
from gemini_core.adaptive.trainer import Trainer
from gemini_core.device import pick_device
from gemini_core.errors import CheckpointError
from gemini_core.paths import baselines_dir
from gemini_core.progress import ProgressFn, notify
from gemini_core.scenarios.base import TrainSettings
from gemini_core.techniques.qat import clone
from gemini_core.training.baseline import Baseline, get_baseline
from gemini_core.training.distributed import all_reduce, barrier, dist_info
from gemini_core.training.loop import reproducible

__all__ = ["baseline_from_adaptive_description", "train_adaptive"]


def _initial_model(scenario, settings: AdaptiveSettings, init, init_baseline) -> nn.Module:
    """The model training starts from: a fresh one (seeded), or a copy of ``init``'s."""
    torch.manual_seed(settings.seed)  # inside ``reproducible``: the private random state, not the caller's
    if init is None:
        return scenario.build_model()
    return clone(init_baseline.model if init_baseline is not None else init)


def train_adaptive(scenario, settings: AdaptiveSettings | None = None, progress: ProgressFn | None = None,
                   should_stop: Callable[[], bool] | None = None, device=None, init=None,
                   init_history: list | None = None, retrain: bool = False, cache: bool = True):
    """Train ``scenario``'s model as ``settings`` say; returns a ``Baseline`` (cached unless ``cache=False``).

    ``init``: a ``Baseline`` to continue from (its key joins the cache key, its pruning history
    comes first in the result's), an ``nn.Module`` (not cached unless it is a Baseline), or None
    (``scenario.build_model()``). Raises ``Cancelled`` when ``should_stop`` says so. Inside a
    process group, ranks other than 0 get None when the result was already cached.
    """
    settings = (settings or AdaptiveSettings()).resolved(scenario)
    rank, world = dist_info()
    progress = progress if rank == 0 else None
    device = torch.device(device) if device is not None else pick_device()
    init_baseline = init if hasattr(init, "model") and hasattr(init, "key") else None
    if init_baseline is not None:
        init_history = list(init_baseline.pruning_history or [])
    cache = cache and (init is None or init_baseline is not None)
    key = adaptive_key(scenario, settings, init_baseline.key if init_baseline is not None else None, world)
    folder = baselines_dir() / key
    description = {**settings.to_dict(), "key": key, "world_size": world,
                   "init_baseline": init_baseline.describe() if init_baseline is not None else None}

    if cache and not retrain and all_reduce([float(rank == 0 and (folder / "meta.json").exists())], device,
                                            "max")[0]:
        if rank != 0:
            return None
        notify(progress, "cached", baseline_key=key)
        return load_adaptive_baseline(scenario, folder)

    _ = scenario.splits  # the data is loaded before the seed is set: the seed governs the model's start alone
    with reproducible(settings.seed, settings.threads, device):
        trainer = Trainer(scenario, settings, _initial_model(scenario, settings, init, init_baseline),
                           init_history, device, progress, should_stop)
        trainer.announce(key)
        for epoch in range(settings.epochs):
            if trainer.run_epoch(epoch):
                break
        baseline = trainer.finish(key, folder, description)
    if cache and rank == 0:
        write_adaptive_baseline(baseline, trainer.summary)
    barrier()
    return baseline


def baseline_from_adaptive_description(scenario, description: dict, progress: ProgressFn | None = None, device=None):
    """Load (or train again) the adaptive baseline a stored run was measured on."""
    adaptive = description["adaptive"]
    folder = baselines_dir() / adaptive.get("key", description.get("baseline_key", ""))
    if (folder / "meta.json").exists():
        return load_adaptive_baseline(scenario, folder)
    world = int(adaptive.get("world_size") or 1)
    if world != dist_info()[1]:
        # Retraining on another number of processes would give other weights under another key.
        raise CheckpointError(f"the adaptive baseline {folder.name} was trained on {world} processes and is not in "
                              f"this home; train it again with `train --adaptive --nproc {world}` and the same "
                              "settings")
    init_baseline = _init_from_description(scenario, adaptive.get("init_baseline"), device)
    return train_adaptive(scenario, AdaptiveSettings.from_dict(adaptive), progress=progress, device=device,
                          init=init_baseline)


def _init_from_description(scenario, init: dict | None, device) -> Baseline | None:
    """The baseline an adaptive training started from (of the same scenario), rebuilt from its description."""
    if not init:
        return None
    if init.get("adaptive"):
        return baseline_from_adaptive_description(scenario, init, device=device)
    return get_baseline(scenario, TrainSettings(**init["train_settings"]), device=device)
