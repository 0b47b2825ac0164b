"""Recovery after compression: knowledge distillation to the uncompressed teacher's logits
(KL divergence at a temperature) or plain fine-tuning on the labels, with the same step budget.

Works for causal LMs (logits per token, hard labels = next token) and for classifiers (logits
per example, hard labels given): pass ``forward`` and ``hard_loss`` for the latter. Pruned
weights stay zero (the mask is re-applied after every step), so sparsity is kept.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from gemini_core.errors import ConfigError
from gemini_core.training.distill import kd_loss

MODES = ("distill", "finetune")
__all__ = ["MODES", "hidden_state_loss", "kd_loss", "lm_logits", "lm_logits_and_hidden", "lm_next_token_loss",
           "recover", "zero_masks"]


def lm_logits(model, batch: torch.Tensor) -> torch.Tensor:
    return model(input_ids=batch, use_cache=False).logits


def lm_logits_and_hidden(model, batch: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    out = model(input_ids=batch, use_cache=False, output_hidden_states=True)
    return out.logits, out.hidden_states[1:]  # each block's output (the embeddings are not compressed)


def hidden_state_loss(student_hidden, teacher_hidden) -> torch.Tensor:
    """Per-block feature distillation ("SquareHead", Kurtic et al. 2023): the mean squared error of
    each block's output, normalised by the teacher's mean square so every block counts alike,
    averaged over the blocks."""
    terms = [((s.float() - t.float()) ** 2).mean() / (t.float() ** 2).mean().clamp(min=1e-12)
             for s, t in zip(student_hidden, teacher_hidden)]
    return torch.stack(terms).mean()


def lm_next_token_loss(logits: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))


def zero_masks(model) -> dict[str, torch.Tensor]:
    """Where 2-D weights are exactly zero (pruned), to keep them zero while training."""
    return {name: p == 0 for name, p in model.named_parameters() if p.dim() == 2 and bool((p == 0).any())}


def _trainable(model, freeze_embeddings: bool) -> list[torch.nn.Parameter]:
    frozen = set()
    if freeze_embeddings:  # the (often tied) vocabulary matrices: large, and not what was compressed
        for get in ("get_input_embeddings", "get_output_embeddings"):
            module = getattr(model, get, lambda: None)()
            if module is not None:
                frozen.update(id(p) for p in module.parameters())
    params = []
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen)
        if p.requires_grad:
            params.append(p)
    return params


def recover(student, teacher, batches, steps: int, batch_size: int = 2, mode: str = "distill",
            lr: float = 1e-4, temperature: float = 1.0, seed: int = 0,
            forward: Callable = lm_logits, hard_loss: Callable = lm_next_token_loss,
            freeze_embeddings: bool = True, alpha: float = 1.0, hidden_weight: float = 0.0) -> dict:
    """Train ``student`` for exactly ``steps`` optimizer steps on ``batches`` (a tensor of rows, or
    a list of batch objects), cycling in a fixed order. Returns the settings and the losses.

    ``mode="distill"`` minimises ``alpha * KD + (1 - alpha) * CE`` (``alpha=1``: pure distillation);
    ``mode="finetune"`` the CE on the hard labels only. Both see the same batches in the same order
    with the same optimizer, so the two differ in the loss alone. ``hidden_weight > 0`` (causal LMs)
    adds that weight times the per-block feature loss (``hidden_state_loss``) to distillation."""
    if mode not in MODES:
        raise ConfigError(f"unknown recovery {mode!r}; choose from {', '.join(MODES)}")
    if steps < 1 or temperature <= 0:
        raise ConfigError("recovery needs at least 1 step and a positive temperature")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"the distillation weight alpha must be between 0 and 1, not {alpha}")
    if hidden_weight < 0 or (hidden_weight > 0 and forward is not lm_logits):
        raise ConfigError("feature distillation (hidden_weight > 0) is for causal LMs, with a weight of 0 or more")
    if mode == "distill" and teacher is None:
        raise ConfigError("distillation needs the uncompressed teacher model")
    if teacher is not None:
        teacher.eval()  # the uncompressed reference: no dropout, no training-mode behaviour
    torch.manual_seed(seed)
    rows = batches if isinstance(batches, list) else list(batches.split(batch_size))
    masks = zero_masks(student)
    named = dict(student.named_parameters())
    optimizer = torch.optim.AdamW(_trainable(student, freeze_embeddings), lr=lr, weight_decay=0.0)
    student.train()
    losses, start = [], time.perf_counter()
    for step in range(steps):
        batch = rows[step % len(rows)]
        features = mode == "distill" and hidden_weight > 0
        logits, hidden = lm_logits_and_hidden(student, batch) if features else (forward(student, batch), None)
        if mode == "distill":
            with torch.no_grad():
                target, target_hidden = lm_logits_and_hidden(teacher, batch) if features else \
                    (forward(teacher, batch), None)
            loss = kd_loss(logits, target, temperature)
            if alpha < 1.0:
                loss = alpha * loss + (1.0 - alpha) * hard_loss(logits, batch)
            if features:
                loss = loss + hidden_weight * hidden_state_loss(hidden, target_hidden)
        else:
            loss = hard_loss(logits, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for name, mask in masks.items():
                named[name].masked_fill_(mask, 0)
        losses.append(float(loss.detach()))
    student.eval()
    for p in student.parameters():
        p.requires_grad_(True)
    return {"recovery": mode, "steps": steps, "batch_size": batch_size, "lr": lr,
            "temperature": temperature if mode == "distill" else None,
            "alpha": alpha if mode == "distill" else None,
            "hidden_weight": hidden_weight if mode == "distill" else None, "loss_first": losses[0],
            "loss_last": losses[-1], "train_seconds": round(time.perf_counter() - start, 1)}
