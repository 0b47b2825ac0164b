"""Training: the loop, progress callbacks, evaluation, and the cached baseline."""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file
from torch import nn

from gemini_core.device import pick_device
from gemini_core.errors import Cancelled
from gemini_core.paths import baselines_dir
from gemini_core.training.schedules import one_cycle_warmup_share
from gemini_core.scenarios.base import Scenario, Split, TrainSettings

ProgressFn = Callable[[dict], None]
BASELINE_FORMAT = 1


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
    from gemini_core.errors import Cancelled

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
        optimizer, max_lr=settings.lr, total_steps=max(total_steps, 1), pct_start=one_cycle_warmup_share(max(total_steps, 1))
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
            if progress is not None:
                progress({"event": "step", "epoch": epoch + 1, "step": step, "total_steps": total_steps,
                          "loss": losses[-1]})
            if step >= total_steps or (should_stop is not None and should_stop()):
                break
        val_acc = accuracy_of(model, splits.val, device=device)
        record = {
            "event": "epoch", "epoch": epoch + 1, "epochs": settings.epochs, "step": step,
            "total_steps": total_steps, "train_loss": sum(losses) / max(len(losses), 1),
            "val_accuracy": val_acc, "lr": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - started,
        }
        history.append(record)
        if progress is not None:
            progress(record)
        if val_acc > best_acc:
            best_acc = val_acc
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if step >= total_steps or (should_stop is not None and should_stop()):
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


@dataclass
class Baseline:
    """A trained model with what is needed to find, rebuild and compare it."""

    scenario: Scenario
    model: nn.Module
    key: str
    settings: TrainSettings
    history: list[dict]
    test_accuracy: float
    cached: bool
    path: Path
    # Adaptive training (adaptive.py): its settings, and torch-pruning's history of the structural
    # steps taken while training, replayable on ``scenario.build_model()``. None for plain baselines.
    adaptive: dict | None = None
    pruning_history: list | None = None
    summary: dict | None = None  # adaptive: what training did (rollbacks, params and MACs before / after, time)

    def describe(self) -> dict:
        info = {"baseline_key": self.key, "test_accuracy": self.test_accuracy, "cached": self.cached,
                "train_settings": self.settings.to_dict(), "path": str(self.path),
                **self.scenario.describe()}
        if self.adaptive is not None:
            info["adaptive"] = self.adaptive
        return info


def baseline_key(scenario: Scenario, settings: TrainSettings) -> str:
    blob = json.dumps({"format": BASELINE_FORMAT, "arch": scenario.arch(), "data": scenario.fingerprint(),
                       "train": settings.to_dict()}, sort_keys=True)
    return f"{scenario.name.replace(':', '_').replace('/', '_')[:40]}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def get_baseline(
    scenario: Scenario,
    settings: TrainSettings | None = None,
    progress: ProgressFn | None = None,
    retrain: bool = False,
    device=None,
    should_stop: Callable[[], bool] | None = None,
) -> Baseline:
    """Load the cached baseline for (scenario, data, settings) or train and cache it."""
    from safetensors.torch import save_file

    settings = settings or scenario.default_train
    device = device or pick_device()
    key = baseline_key(scenario, settings)
    folder = baselines_dir() / key
    weights, meta_path = folder / "model.safetensors", folder / "meta.json"
    model = scenario.build_model()
    if weights.exists() and meta_path.exists() and not retrain:
        return _load_cached(scenario, model, key, settings, folder, progress)

    history = train_model(model, scenario, settings, progress=progress, device=device, should_stop=should_stop)
    if should_stop is not None and should_stop():
        # A stopped training is not a baseline: cache nothing (an earlier good one stays).
        raise Cancelled("training was cancelled; no baseline was saved")
    model.to("cpu").eval()
    test_acc = accuracy_of(model, scenario.splits.test)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary folder, then rename: a killed process never leaves half a baseline.
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"))
    (tmp / "meta.json").write_text(json.dumps({
        "key": key, "scenario": scenario.name, "arch": scenario.arch(), "train_settings": settings.to_dict(),
        "history": history, "test_accuracy": test_acc, "data": scenario.describe(),
    }, indent=1))
    import shutil

    complete = weights.exists() and meta_path.exists()
    if folder.exists() and (retrain or not complete):
        # Move the old one aside first: a reader never finds the folder half-deleted.
        old = Path(tempfile.mkdtemp(prefix=f".{key}-old-", dir=folder.parent))
        try:
            os.replace(folder, old / "x")
        except FileNotFoundError:  # another process replaced it meanwhile
            pass
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:
        if not (weights.exists() and meta_path.exists()):
            raise
        # Another process (a second sweep on the same home) cached this baseline while we trained:
        # use its weights, so every run of this baseline key measures the same model.
        shutil.rmtree(tmp, ignore_errors=True)
        return _load_cached(scenario, model, key, settings, folder, progress)
    return Baseline(scenario, model, key, settings, history, test_acc, False, folder)


def _load_cached(scenario, model: nn.Module, key: str, settings, folder: Path, progress) -> Baseline:
    """The cached baseline in ``folder``, its weights loaded into ``model`` (built by the scenario)."""
    meta = json.loads((folder / "meta.json").read_text())
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    model.eval()
    if progress is not None:
        progress({"event": "cached", "baseline_key": key})
    return Baseline(scenario, model, key, settings, meta["history"], meta["test_accuracy"], True, folder)


def baseline_from_description(description: dict, progress: ProgressFn | None = None, device=None) -> Baseline:
    """Rebuild the scenario and load (or retrain) the baseline a stored run was measured on."""
    from gemini_core.scenarios import get_scenario

    scenario = get_scenario(description["scenario"], **description.get("scenario_options", {}))
    if description.get("adaptive"):
        from gemini_core.adaptive.train import baseline_from_adaptive_description

        return baseline_from_adaptive_description(scenario, description, progress=progress, device=device)
    settings = TrainSettings(**description["train_settings"])
    return get_baseline(scenario, settings, progress=progress, device=device)
