"""Small architectures the built-in and user-data scenarios train from scratch."""
from __future__ import annotations

import torch
from torch import nn

from gemini_core.scenarios.registry import register_architecture


class SmallCNN(nn.Module):
    """Conv-BN-ReLU blocks, so channel pruning through the dependency graph is meaningful."""

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int, width_mult: int = 32):
        super().__init__()
        c1, c2 = width_mult, width_mult * 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c2, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 4, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Two hidden layers; enough for standardised tabular features."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(0.1),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _rebuild_cnn(arch: dict) -> SmallCNN:
    return SmallCNN(int(arch["in_channels"]), int(arch["height"]), int(arch["width"]), int(arch["num_classes"]),
                    width_mult=int(arch.get("width_mult", 32)))


def _cnn_inputs(arch: dict) -> dict:
    return {"x": {"shape": [arch["in_channels"], arch["height"], arch["width"]], "dtype": "float32"}}


def _rebuild_mlp(arch: dict) -> MLP:
    return MLP(int(arch["in_features"]), int(arch["num_classes"]), hidden=int(arch.get("hidden", 128)))


def _mlp_inputs(arch: dict) -> dict:
    return {"x": {"shape": [arch["in_features"]], "dtype": "float32"}}


register_architecture("SmallCNN", _rebuild_cnn, _cnn_inputs)
register_architecture("MLP", _rebuild_mlp, _mlp_inputs)
