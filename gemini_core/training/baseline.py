"""The baseline: trained once per (scenario, data, settings), cached under the home folder, reused."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from gemini_core.device import pick_device
from gemini_core.errors import Cancelled
from gemini_core.fsio import publish_folder, staging_folder
from gemini_core.paths import baselines_dir
from gemini_core.progress import ProgressFn, notify
from gemini_core.results.stats import wilson_interval
from gemini_core.scenarios.base import Scenario, TrainSettings
from gemini_core.training.loop import predict, reproducible, train_model

# 2: deterministic training at a fixed thread count (TrainSettings.threads), seeded initialisation,
# early stopping; per-example test correctness stored for paired comparisons.
BASELINE_FORMAT = 2


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
    # 1 where the baseline classifies the test example right, in test order: points pair against it.
    test_correct: list[int] | None = None
    # "trained" here (now or earlier), or "shipped": the verified copy the product ships (training/shipped.py).
    origin: str = "trained"

    def describe(self) -> dict:
        info = {"baseline_key": self.key, "test_accuracy": self.test_accuracy, "cached": self.cached,
                "origin": self.origin,
                "train_settings": self.settings.to_dict(), "path": str(self.path),
                **self.scenario.describe()}
        if self.test_correct is not None:
            n = len(self.test_correct)
            low, high = wilson_interval(sum(self.test_correct), n)
            info.update({"test_n": n, "test_accuracy_ci95": [low, high]})
        chosen = chosen_epoch(self.history)
        if chosen is not None:
            info["chosen_epoch"] = chosen
        if self.adaptive is not None:
            info["adaptive"] = self.adaptive
        return info


def chosen_epoch(history: list[dict] | None) -> dict | None:
    """The history's "chosen" record (epoch kept, why training stopped), or None for older baselines."""
    for record in reversed(history or []):
        if record.get("event") == "chosen":
            return {k: v for k, v in record.items() if k != "event"}
    return None


def test_correctness(model: nn.Module, scenario: Scenario, threads: int | None = 1) -> list[int]:
    """1 / 0 per test example (in order): whether ``model`` classifies it right, at a fixed thread count."""
    with reproducible(0, threads):
        preds = predict(model, scenario.splits.test)
    return [int(v) for v in (preds == scenario.splits.test.labels).tolist()]


def accelerator_name(device) -> str | None:
    """None on the CPU; else what names the accelerator in a baseline's key (its kernels round differently)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cpu":
        return None
    if device.type == "cuda" and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def baseline_key(scenario: Scenario, settings: TrainSettings, device=None) -> str:
    """Everything that changes the weights: format (training code), architecture, data, every training
    setting (seed and training thread count included) and, off the CPU, the accelerator (a GPU's kernels
    round differently: measured on an H200, the digits weights differ from the CPU's)."""
    content = {"format": BASELINE_FORMAT, "arch": scenario.arch(), "data": scenario.fingerprint(),
               "train": settings.to_dict()}
    accelerator = accelerator_name(device)
    if accelerator:  # CPU keys stay as they were, so existing CPU caches remain valid
        content["accelerator"] = accelerator
    return key_of_content(scenario.name, content)


def key_of_content(scenario_name: str, content: dict) -> str:
    """The cache key of a baseline from what changes its weights (``baseline_key``'s content)."""
    blob = json.dumps(content, sort_keys=True)
    return f"{scenario_name.replace(':', '_').replace('/', '_')[:40]}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def get_baseline(
    scenario: Scenario,
    settings: TrainSettings | None = None,
    progress: ProgressFn | None = None,
    retrain: bool = False,
    device=None,
    should_stop: Callable[[], bool] | None = None,
) -> Baseline:
    """Load the cached baseline for (scenario, data, settings) or train and cache it."""
    settings = settings or scenario.default_train
    device = device or pick_device()
    key = baseline_key(scenario, settings, device)
    folder = cache_folder(key)
    weights, meta_path = folder / "model.safetensors", folder / "meta.json"
    with reproducible(settings.seed, settings.threads):  # initial weights: seeded, whatever ran before
        model = scenario.build_model()
    if weights.exists() and meta_path.exists() and not retrain:
        return _load_cached(scenario, model, key, settings, folder, progress)

    history = train_model(model, scenario, settings, progress=progress, device=device, should_stop=should_stop)
    if should_stop is not None and should_stop():
        # A stopped training is not a baseline: cache nothing (an earlier good one stays).
        raise Cancelled("training was cancelled; no baseline was saved")
    model.to("cpu").eval()
    test_correct = test_correctness(model, scenario, settings.threads)
    test_acc = sum(test_correct) / len(test_correct) if test_correct else float("nan")
    complete = weights.exists() and meta_path.exists()
    if not write_cached(folder, scenario, model, key, settings, history, test_acc, test_correct,
                        replace=retrain or not complete):
        # Another process (a second sweep on the same home) cached this baseline while we trained:
        # use its weights, so every run of this baseline key measures the same model.
        return _load_cached(scenario, model, key, settings, folder, progress)
    return Baseline(scenario, model, key, settings, history, test_acc, False, folder, test_correct=test_correct)


def cache_folder(key: str) -> Path:
    """Where this home caches the baseline ``key``."""
    return baselines_dir() / key


def is_cached(key: str) -> bool:
    folder = cache_folder(key)
    return (folder / "model.safetensors").exists() and (folder / "meta.json").exists()


def write_cached(folder: Path, scenario: Scenario, model: nn.Module, key: str, settings: TrainSettings,
                 history: list[dict], test_acc: float, test_correct: list[int], replace: bool,
                 origin: str = "trained") -> bool:
    """The baseline's weights and meta.json in ``folder``, written to a temporary folder, then renamed (a killed
    process never leaves half a baseline); False when another process published it first (``replace`` off)."""
    with staging_folder(folder) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        (tmp / "meta.json").write_text(json.dumps({
            "key": key, "scenario": scenario.name, "arch": scenario.arch(), "train_settings": settings.to_dict(),
            "history": history, "test_accuracy": test_acc, "data": scenario.describe(),
            "test_correct": "".join(map(str, test_correct)), "origin": origin,
        }, indent=1))
        return publish_folder(tmp, folder, replace=replace)


def load_cached(scenario: Scenario, key: str, settings: TrainSettings, progress: ProgressFn | None = None
                ) -> Baseline:
    """The baseline ``key`` cached in this home (``is_cached``)."""
    with reproducible(settings.seed, settings.threads):
        model = scenario.build_model()
    return _load_cached(scenario, model, key, settings, cache_folder(key), progress)


def _load_cached(scenario, model: nn.Module, key: str, settings, folder: Path, progress) -> Baseline:
    """The cached baseline in ``folder``, its weights loaded into ``model`` (built by the scenario)."""
    meta = json.loads((folder / "meta.json").read_text())
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    model.eval()
    notify(progress, "cached", baseline_key=key)
    correct = meta.get("test_correct")
    if correct is None or len(correct) != len(scenario.splits.test):
        correct = test_correctness(model, scenario, settings.threads)
    else:
        correct = [int(c) for c in correct]
    return Baseline(scenario, model, key, settings, meta["history"], meta["test_accuracy"], True, folder,
                    test_correct=correct, origin="shipped" if meta.get("origin") == "shipped" else "trained")
