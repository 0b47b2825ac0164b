"""Scenarios on scikit-learn's shipped data sets: they work offline with no configuration."""
from __future__ import annotations

import numpy as np
import torch

from gemini_core.scenarios.base import PruneSpec, Scenario, Split, Splits, TrainSettings, _last_linear, stratified_split
from gemini_core.scenarios.models import MLP, SmallCNN
from gemini_core.scenarios.registry import register_scenario


def standardise(x: np.ndarray, train_index: np.ndarray) -> np.ndarray:
    """Standardise with statistics from the training rows only (no leakage from test)."""
    mean = x[train_index].mean(axis=0)
    std = x[train_index].std(axis=0)
    std[std == 0] = 1.0
    return (x - mean) / std


def splits_from_arrays(x: np.ndarray, y: np.ndarray, class_names: list[str], seed: int = 0,
                       input_name: str = "x") -> Splits:
    train, val, test = stratified_split(y, seed=seed)

    def make(index):
        return Split({input_name: torch.as_tensor(x[index], dtype=torch.float32)},
                     torch.as_tensor(y[index], dtype=torch.long))

    return Splits(make(train), make(val), make(test), class_names)


@register_scenario("digits", label="digits: handwritten 8x8 digits, small CNN (built in)", data_kind="builtin",
                   seconds_per_point=0.6, seconds_per_setting=0.5, seconds_to_train=5.0,
                   recovery_scales_with_steps=True)
class DigitsScenario(Scenario):
    name = "digits"
    domain = "vision"
    description = "scikit-learn handwritten digits (1,797 8x8 images), small CNN"
    default_train = TrainSettings(epochs=40, batch_size=64, lr=3e-3, patience=8)

    def load_splits(self) -> Splits:
        from sklearn.datasets import load_digits

        data = load_digits()
        x = (data.images / 16.0).astype(np.float32)[:, None, :, :]  # N x 1 x 8 x 8 in [0, 1]
        y = data.target.astype(np.int64)
        return splits_from_arrays(x, y, [str(c) for c in data.target_names])

    def build_model(self):
        return SmallCNN(1, 8, 8, 10)

    def arch(self) -> dict:
        return {"scenario": self.name, "model": "SmallCNN", "in_channels": 1, "height": 8, "width": 8,
                "num_classes": 10, "width_mult": 32}

    def prune_spec(self, model) -> PruneSpec:
        # Multiples of 8 channels keep CPU kernels on their fast paths.
        return PruneSpec(ignored_layers=[_last_linear(model)], round_to=8)


@register_scenario("breast-cancer", label="breast-cancer: 30 tabular features, MLP (built in)", data_kind="builtin",
                   seconds_per_point=0.5, seconds_per_setting=0.3, seconds_to_train=4.0,
                   recovery_scales_with_steps=True)
class BreastCancerScenario(Scenario):
    name = "breast-cancer"
    domain = "tabular"
    description = "scikit-learn breast cancer (569 patients, 30 features), MLP"
    default_train = TrainSettings(epochs=60, batch_size=32, lr=1e-3, weight_decay=1e-4, patience=10)

    def load_splits(self) -> Splits:
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        y = data.target.astype(np.int64)
        train, _, _ = stratified_split(y)
        x = standardise(data.data.astype(np.float64), train).astype(np.float32)
        return splits_from_arrays(x, y, [str(c) for c in data.target_names])

    def build_model(self):
        return MLP(30, 2)

    def arch(self) -> dict:
        return {"scenario": self.name, "model": "MLP", "in_features": 30, "num_classes": 2, "hidden": 128}

    def prune_spec(self, model) -> PruneSpec:
        return PruneSpec(ignored_layers=[_last_linear(model)], round_to=8)
