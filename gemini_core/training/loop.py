"""Training: the loop (AdamW, one-cycle schedule, best-validation weights), prediction and accuracy."""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
from torch import nn

from gemini_core.errors import Cancelled
from gemini_core.progress import ProgressFn, notify
from gemini_core.scenarios.base import Scenario, Split, TrainSettings
from gemini_core.training.schedules import one_cycle_warmup_share


@torch.no_grad()
def predict(model: nn.Module, split: Split, batch_size: int = 256, device: str | torch.device = "cpu") -> torch.Tensor:
    """Predicted class for every example of ``split``."""
    model.eval()
    preds = []
    for batch in split.batches(batch_size):
        inputs = {k: v.to(device) for k, v in batch.inputs.items()}
        logits = model(**inputs)
        preds.append(logits.float().argmax(dim=-1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def accuracy_of(model: nn.Module, split: Split, device="cpu", batch_size: int = 256) -> float:
    preds = predict(model, split, batch_size=batch_size, device=device)
    return float((preds == split.labels).float().mean()) if len(split) else float("nan")


def train_steps(
    model: nn.Module,
    split: Split,
    steps: int,
    lr: float,
    batch_size: int = 64,
    seed: int = 0,
    device="cpu",
    weight_decay: float = 0.0,
    after_step: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> float:
    """A fixed number of Adam steps (recovery after pruning); returns the last loss.

    ``should_stop`` is asked before every step; when it says so, ``Cancelled`` is raised (the
    half-recovered model is the caller's to drop).
    """
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    done, epoch, loss_value = 0, 0, float("nan")
    while done < steps:
        for batch in split.batches(batch_size, shuffle=True, seed=seed + epoch):
            if should_stop is not None and should_stop():
                raise Cancelled(f"stopped after {done} of {steps} recovery steps")
            inputs = {k: v.to(device) for k, v in batch.inputs.items()}
            loss = loss_fn(model(**inputs), batch.labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            loss_value = float(loss.detach())
            done += 1
            if done >= steps:
                break
        epoch += 1
    model.eval()
    return loss_value


def train_model(
    model: nn.Module,
    scenario: Scenario,
    settings: TrainSettings,
    progress: ProgressFn | None = None,
    device="cpu",
    should_stop: Callable[[], bool] | None = None,
) -> list[dict]:
    """Train with AdamW and cosine decay, keeping the best-validation weights. Returns the history."""
    splits = scenario.splits
    torch.manual_seed(settings.seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(splits.train) / settings.batch_size))
    total_steps = steps_per_epoch * settings.epochs
    if settings.max_steps:
        total_steps = min(total_steps, settings.max_steps)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, total_steps=max(total_steps, 1),
        pct_start=one_cycle_warmup_share(max(total_steps, 1))
    )
    loss_fn = nn.CrossEntropyLoss()
    history: list[dict] = []
    best_acc, best_state, step = -1.0, None, 0
    started = time.perf_counter()
    for epoch in range(settings.epochs):
        model.train()
        losses = []
        for batch in splits.train.batches(settings.batch_size, shuffle=True, seed=settings.seed + epoch):
            inputs = {k: v.to(device) for k, v in batch.inputs.items()}
            loss = loss_fn(model(**inputs), batch.labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            step += 1
            notify(progress, "step", epoch=epoch + 1, step=step, total_steps=total_steps, loss=losses[-1])
            if step >= total_steps or (should_stop is not None and should_stop()):
                break
        val_acc = accuracy_of(model, splits.val, device=device)
        record = {
            "epoch": epoch + 1, "epochs": settings.epochs, "step": step,
            "total_steps": total_steps, "train_loss": sum(losses) / max(len(losses), 1),
            "val_accuracy": val_acc, "lr": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - started,
        }
        history.append({"event": "epoch", **record})
        notify(progress, "epoch", **record)
        if val_acc > best_acc:
            best_acc = val_acc
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if step >= total_steps or (should_stop is not None and should_stop()):
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


