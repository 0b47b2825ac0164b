"""Small models the runtime tests build on: a tiny MLP, the digits SmallCNN and a 2-layer BERT (seconds each)."""
from __future__ import annotations

import torch
from torch import nn

from gemini_core.scenarios.models import MLP, SmallCNN

VOCAB = 300
SEQUENCE = 16


class TinyBert(nn.Module):
    """BertForSequenceClassification with hidden 32, 2 layers, 2 heads; forward returns logits."""

    def __init__(self, num_labels: int = 2, seed: int = 0):
        super().__init__()
        from transformers import BertConfig, BertForSequenceClassification

        torch.manual_seed(seed)
        config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            vocab_size=VOCAB, max_position_embeddings=64, num_labels=num_labels)
        self.hf = BertForSequenceClassification(config).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=input_ids, attention_mask=attention_mask).logits


def bert_inputs(batch: int, sequence: int = SEQUENCE, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (batch, sequence), generator=generator)
    mask = torch.ones_like(ids)
    mask[: batch // 2, sequence * 3 // 4:] = 0  # some padding, so the mask path is exercised
    return {"input_ids": ids, "attention_mask": mask}


def mlp_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(30, 2).eval()


def mlp_inputs(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    return {"x": torch.randn(batch, 30, generator=torch.Generator().manual_seed(seed))}


def cnn_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return SmallCNN(1, 8, 8, 10).eval()


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).float()


def calibration_batches(split, batch_size: int = 64, count: int = 4) -> list[dict[str, torch.Tensor]]:
    """The first ``count`` training batches, as the product calibrates (training data, never test)."""
    return [batch.inputs for _, batch in zip(range(count), split.batches(batch_size))]
