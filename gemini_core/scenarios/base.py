"""What every scenario (model + data + metric) provides to the engine.

Data is held as tensors: a split is a dict of named input tensors plus a label tensor, and a
model's ``forward(**inputs)`` returns class logits. That one shape lets training, pruning,
measurement and export treat a CNN, an MLP and a BERT encoder alike.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn


@dataclass
class Split:
    """One data split: named input tensors (first dim = examples) and integer labels."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index) -> "Split":
        index = torch.as_tensor(index, dtype=torch.long)
        return Split({k: v[index] for k, v in self.inputs.items()}, self.labels[index])

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator["Split"]:
        order = torch.arange(len(self))
        if shuffle:
            order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        for start in range(0, len(self), batch_size):
            yield self.take(order[start : start + batch_size])

    def first(self, count: int) -> "Split":
        """The first ``count`` examples, repeated when the split is smaller (for latency batches)."""
        index = torch.arange(count) % max(len(self), 1)
        return self.take(index)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self.inputs):
            digest.update(name.encode())
            digest.update(self.inputs[name].contiguous().numpy().tobytes())
        digest.update(self.labels.numpy().tobytes())
        return digest.hexdigest()[:16]


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    class_names: list[str]

    def fingerprint(self) -> str:
        parts = "".join(s.fingerprint() for s in (self.train, self.val, self.test))
        parts += "|".join(self.class_names)
        return hashlib.sha256(parts.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainSettings:
    """How the baseline is trained; part of the baseline's cache key."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    max_steps: int | None = None  # stop early after this many optimizer steps (tests, quick demos)
    seed: int = 0
    # Early stopping: stop after this many epochs without a better validation accuracy (0: run every
    # epoch); the best epoch's weights are restored either way.
    patience: int = 0
    # CPU threads training runs on (set for training, restored after). Float sums split over another
    # number of threads round differently, so the thread count changes the weights: it is fixed here
    # and part of the cache key, not taken from the machine.
    threads: int = 1

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class PruneSpec:
    """What torch-pruning must know about a model beyond its graph."""

    ignored_layers: list[nn.Module] = field(default_factory=list)
    num_heads: dict[nn.Module, int] = field(default_factory=dict)
    # Called after every pruning step (e.g. to fix attention attributes on BERT).
    after_prune: Callable[[nn.Module], None] | None = None
    round_to: int | None = None
    # Transformers: prune whole heads; the hidden size stays so residual paths keep their width.
    prune_heads: bool = False
    # Any other torch-pruning MetaPruner keyword arguments this model needs.
    tp_kwargs: dict = field(default_factory=dict)
    # Layers that unstructured / N:M pruning and quantization leave alone (besides none).
    skip_unstructured: list[nn.Module] = field(default_factory=list)


def stratified_split(labels: np.ndarray, fractions=(0.7, 0.15, 0.15), seed: int = 0):
    """Indices of a fixed, stratified train / val / test split."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    test_size = fractions[2]
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 3 else None
    train_val, test = train_test_split(index, test_size=test_size, random_state=seed, stratify=stratify)
    val_share = fractions[1] / (fractions[0] + fractions[1])
    stratify_tv = labels[train_val] if stratify is not None else None
    train, val = train_test_split(train_val, test_size=val_share, random_state=seed, stratify=stratify_tv)
    return np.sort(train), np.sort(val), np.sort(test)


def train_val_split(labels: np.ndarray, val_share: float = 0.15, seed: int = 0):
    """Train / validation indices (stratified when every class has two examples), for data with a test file."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    train, val = train_test_split(index, test_size=val_share, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)


class Scenario:
    """A model family plus its data. Subclasses fill in the data and the architecture."""

    name: str = "scenario"
    domain: str = "other"
    description: str = ""
    default_train = TrainSettings()
    # How recovery after pruning moves the rate (training.loop.train_steps): "one-cycle" settles a model
    # trained from scratch at a high rate; a scenario whose model is fine-tuned from pre-trained weights
    # at a small rate may say "constant" (measured per scenario; see TextScenario).
    recovery_schedule = "one-cycle"

    def __init__(self) -> None:
        self._splits: Splits | None = None
        self.options: dict = {}  # how get_scenario built it (data paths, columns), to rebuild it later

    # -- data -------------------------------------------------------------------------------
    def load_splits(self) -> Splits:
        raise NotImplementedError

    @property
    def splits(self) -> Splits:
        if self._splits is None:
            self._splits = self.load_splits()
        return self._splits

    # -- model ------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """A fresh, untrained (or pre-trained, for text) model for these splits."""
        raise NotImplementedError

    def prune_spec(self, model: nn.Module) -> PruneSpec:
        return PruneSpec(ignored_layers=[_last_linear(model)])

    def arch(self) -> dict:
        """What ``build_model`` depends on, so an export can rebuild the architecture."""
        return {"scenario": self.name}

    def example_inputs(self, batch_size: int = 1) -> dict[str, torch.Tensor]:
        return self.splits.test.first(batch_size).inputs

    def fingerprint(self) -> str:
        return self.splits.fingerprint()

    def describe(self) -> dict:
        s = self.splits
        return {
            "scenario": self.name,
            "scenario_options": {k: str(v) if hasattr(v, "__fspath__") else v for k, v in self.options.items()},
            "domain": self.domain,
            "classes": s.class_names,
            "train": len(s.train),
            "val": len(s.val),
            "test": len(s.test),
            "data_fingerprint": self.fingerprint(),
        }


def _last_linear(model: nn.Module) -> nn.Module:
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise ValueError("model has no Linear layer to use as the classifier")
    return last
