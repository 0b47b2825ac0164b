"""Training: the loop (AdamW, one-cycle schedule, best-validation weights, early stopping), prediction
and accuracy.

Reproducibility: ``reproducible(seed, threads)`` wraps every training run. It turns on
``torch.use_deterministic_algorithms``, seeds a private copy of torch's random state (so dropout and
initialisation do not depend on what ran before) and sets a fixed CPU thread count, restoring all three
after. Data order comes from a seeded ``torch.Generator`` (``Split.batches``). On CPU this gives the same
weights bit for bit whatever the caller's thread count, executor or entry point. On CUDA it gives the
same weights on the same GPU model, driver and torch build (``CUBLAS_WORKSPACE_CONFIG`` is set for
cuBLAS); another GPU model or library version may round differently.
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from gemini_core.errors import Cancelled, ConfigError, GeminiError
from gemini_core.paths import baselines_dir
from gemini_core.progress import ProgressFn, notify
from gemini_core.scenarios.base import Scenario, Split, TrainSettings
from gemini_core.training.distill import CLASSIFIER_TEMPERATURE, kd_loss
from gemini_core.training.schedules import one_cycle_warmup_share

# How ``train_steps`` recovers a model; part of every fine-tuned point's key, so points stored under an
# earlier recipe (a constant rate) are measured again rather than shown next to new ones.
RECOVERY_RECIPE = "adamw-one-cycle"
RECOVERY_SCHEDULES = ("one-cycle", "constant")  # a scenario's ``recovery_schedule``


def recovery_recipe(schedule: str = "one-cycle") -> str:
    """What a fine-tuned point's key holds of its recovery (another schedule gives another model)."""
    return RECOVERY_RECIPE if schedule == "one-cycle" else f"adamw-{schedule}"


@contextlib.contextmanager
def reproducible(seed: int, threads: int | None = 1, device="cpu") -> Iterator[None]:
    """Deterministic algorithms, seeded random state and ``threads`` CPU threads inside; all restored after."""
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    previous_mode = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    cuda_devices = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        if threads:
            torch.set_num_threads(int(threads))
        # Some CUDA kernels have no deterministic version (adaptive_avg_pool2d's backward, measured on an
        # H200): on a GPU they warn instead of stopping the training, and the README says GPU runs may differ.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous_mode, warn_only=previous_warn)
            torch.set_num_threads(previous_threads)


def trim_padding(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Dynamic padding: cut a padded text batch to its longest example (the attention mask's last 1).

    Right-padded tokens are masked out, so the logits do not change; the work shrinks with the batch's
    real length instead of ``max_length``. Inputs without an ``attention_mask`` pass unchanged.
    """
    mask = inputs.get("attention_mask")
    if mask is None or mask.dim() != 2 or mask.shape[1] == 0:
        return inputs
    used = mask.any(dim=0).nonzero()
    length = int(used.max()) + 1 if len(used) else 1
    if length >= mask.shape[1]:
        return inputs
    return {k: (v[:, :length] if v.dim() == 2 and v.shape[1] == mask.shape[1] else v) for k, v in inputs.items()}


@torch.no_grad()
def predict(model: nn.Module, split: Split, batch_size: int = 256, device: str | torch.device = "cpu",
            should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
    """Predicted class for every example of ``split`` (``should_stop`` asked before every batch)."""
    model.eval()
    preds = []
    for batch in split.batches(batch_size):
        if should_stop is not None and should_stop():
            raise Cancelled("stopped while measuring accuracy; this point stays unmeasured")
        inputs = {k: v.to(device) for k, v in trim_padding(batch.inputs).items()}
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
    threads: int | None = 1,
    teacher: nn.Module | None = None,
    temperature: float = CLASSIFIER_TEMPERATURE,
    schedule: str = "one-cycle",
) -> float:
    """A fixed number of AdamW steps (recovery after pruning); returns the last loss.

    The rate follows the training's own one-cycle schedule over the ``steps``: a short linear warm-up
    to ``lr`` (a fresh Adam's first steps move every weight by about ``lr``, whatever its gradient),
    then cosine decay to about zero, so the model ends settled rather than wherever the last step at a
    constant rate left it. (At a constant 0.3x the base rate, 20 steps at seed 0 cost the unpruned digits
    model 2.6 points of test accuracy; the step-by-step accuracy swung by several points.)
    ``schedule="constant"`` keeps the rate flat instead: a scenario says which (``recovery_schedule``),
    because a pre-trained transformer fine-tuned at a small rate recovers better with it (see TextScenario).

    With a ``teacher`` (the uncompressed model) the loss is knowledge distillation, the KL divergence
    to the teacher's logits at ``temperature``, instead of cross-entropy on the labels: same batches,
    same optimizer, same steps.

    ``should_stop`` is asked before every step; when it says so, ``Cancelled`` is raised (the
    half-recovered model is the caller's to drop). Runs under ``reproducible(seed, threads)``, so
    the same model, data and seed recover to the same weights at any caller thread count.
    """
    with reproducible(seed, threads, device):
        return _train_steps(model, split, steps, lr, batch_size, seed, device, weight_decay, after_step,
                            should_stop, teacher, temperature, schedule)


def _train_steps(model, split, steps, lr, batch_size, seed, device, weight_decay, after_step, should_stop,
                 teacher=None, temperature=CLASSIFIER_TEMPERATURE, schedule="one-cycle") -> float:
    if teacher is not None:
        teacher.to(device).eval()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if schedule not in RECOVERY_SCHEDULES:
        raise ConfigError(f"recovery schedule {schedule!r}: choose from {', '.join(RECOVERY_SCHEDULES)}")
    if schedule == "constant":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)
    else:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1),
                                                        pct_start=one_cycle_warmup_share(max(steps, 1)))
    loss_fn = nn.CrossEntropyLoss()
    done, epoch, loss_value = 0, 0, float("nan")
    while done < steps:
        for batch in split.batches(batch_size, shuffle=True, seed=seed + epoch):
            if should_stop is not None and should_stop():
                raise Cancelled(f"stopped after {done} of {steps} recovery steps")
            inputs = {k: v.to(device) for k, v in trim_padding(batch.inputs).items()}
            if teacher is None:
                loss = loss_fn(model(**inputs), batch.labels.to(device))
            else:
                with torch.no_grad():
                    target = teacher(**inputs)
                loss = kd_loss(model(**inputs), target, temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if after_step is not None:
                after_step()
            loss_value = float(loss.detach())
            done += 1
            if done >= steps:
                break
        epoch += 1
    model.eval()
    return loss_value


# Beyond the weights, what a saved baseline holds (meta.json: history, per-example correctness) and what the
# file system needs for its own blocks.
SAVE_MARGIN_BYTES = 1 << 20


def weights_bytes(model: nn.Module) -> int:
    """What saving ``model``'s state as safetensors takes, about (tensor bytes; the header is small)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """GeminiError naming ``folder`` and the bytes when its disk has less than ``needed`` free: said before
    the work whose result would not fit, not after it. A disk that cannot be asked passes (the write itself
    reports a full disk)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed:
        raise GeminiError(f"not enough free space in {folder} for {what}: it needs about {needed:,} bytes and "
                          f"{free:,} are free; free some space there (or set GEMINI_HOME to a folder on another "
                          "disk), then run this again")


def train_model(
    model: nn.Module,
    scenario: Scenario,
    settings: TrainSettings,
    progress: ProgressFn | None = None,
    device="cpu",
    should_stop: Callable[[], bool] | None = None,
    save_to: Path | None = None,
) -> list[dict]:
    """Train with AdamW and a one-cycle schedule (linear warm-up, cosine decay) until validation stops
    improving (``settings.patience`` epochs), then restore the best-validation weights.

    Returns the history: one record per epoch, then one ``{"event": "chosen", "epoch": N, ...}`` record
    naming the epoch whose weights were kept and why training stopped. Deterministic (``reproducible``).

    The trained model is saved in ``save_to`` (the baselines' folder by default): its disk must hold the
    weights, which is checked before the first step (a full disk was otherwise met only once every epoch had
    run) and again after the last, just before the caller writes them (the disk may have filled meanwhile).
    """
    folder = Path(save_to) if save_to is not None else baselines_dir()
    needed = weights_bytes(model) + SAVE_MARGIN_BYTES
    check_free_space(folder, needed, "the trained baseline")
    with reproducible(settings.seed, settings.threads, device):
        history = _train_model(model, scenario, settings, progress, device, should_stop)
    if should_stop is None or not should_stop():  # a stopped training is not saved: nothing to fit
        check_free_space(folder, needed, "the trained baseline (the disk filled while it trained)")
    return history


def _train_model(model, scenario, settings, progress, device, should_stop) -> list[dict]:
    splits = scenario.splits
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
    best_acc, best_state, best_epoch, step, stale = -1.0, None, 0, 0, 0
    stopped = "all epochs run"
    started = time.perf_counter()
    for epoch in range(settings.epochs):
        model.train()
        losses = []
        for batch in splits.train.batches(settings.batch_size, shuffle=True, seed=settings.seed + epoch):
            inputs = {k: v.to(device) for k, v in trim_padding(batch.inputs).items()}
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
        if val_acc > best_acc:
            best_acc, best_epoch, stale = val_acc, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        # how close early stopping is: an estimate of time left needs it (800 steps planned, 260 run)
        record.update(stale_epochs=stale, patience=settings.patience)
        history.append({"event": "epoch", **record})
        notify(progress, "epoch", **record)
        if step >= total_steps:
            stopped = "step limit reached" if settings.max_steps and step >= settings.max_steps else stopped
            break
        if should_stop is not None and should_stop():
            stopped = "cancelled"
            break
        if settings.patience and stale >= settings.patience:
            stopped = f"validation did not improve for {settings.patience} epochs (early stopping)"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    chosen = {"event": "chosen", "epoch": best_epoch, "val_accuracy": best_acc, "epochs_run": len(history),
              "stopped": stopped, "seconds": time.perf_counter() - started}
    history.append(chosen)
    notify(progress, "chosen", **{k: v for k, v in chosen.items() if k != "event"})
    model.eval()
    return history
