"""The adaptive-baseline cache: its key, writing one (rank 0, through ``fsio``) and loading it back.

A cached adaptive baseline is a folder under ``baselines_dir()`` named by ``adaptive_key``: the
weights (``model.safetensors``) and a ``meta.json`` whose pruning history rebuilds the pruned
architecture before the weights are loaded.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from gemini_core.adaptive.settings import ADAPTIVE_FORMAT, AdaptiveSettings
from gemini_core.errors import CheckpointError
from gemini_core.fsio import publish_folder, staging_folder
from gemini_core.techniques.prune import replay_pruning
from gemini_core.training.baseline import Baseline


def adaptive_key(scenario, settings: AdaptiveSettings, init_key: str | None = None, world_size: int = 1) -> str:
    """The cache key: scenario, data, the resolved settings (seed and thread count included), the starting
    baseline's key and the number of training processes (``world_size``: DDP on 2 ranks does not give a
    single process's weights, see ``adaptive/train.py``)."""
    blob = json.dumps({"format": ADAPTIVE_FORMAT, "kind": "adaptive", "arch": scenario.arch(),
                       "data": scenario.fingerprint(), "adaptive": settings.to_dict(), "init": init_key,
                       "world_size": int(world_size)}, sort_keys=True)
    name = scenario.name.replace(":", "_").replace("/", "_")[:40]
    return f"{name}-adaptive-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def write_adaptive_baseline(baseline: Baseline, summary: dict) -> None:
    """Rank 0 only: weights and meta built in a staging folder, then swapped into ``baseline.path``."""
    scenario = baseline.scenario
    folder = Path(baseline.path)
    state = {k: v.detach().contiguous() for k, v in baseline.model.state_dict().items()}
    with staging_folder(folder) as tmp:
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "meta.json").write_text(json.dumps({
            "key": baseline.key, "kind": "adaptive", "format": ADAPTIVE_FORMAT, "scenario": scenario.name,
            "arch": scenario.arch(), "adaptive": baseline.adaptive, "train_settings": baseline.settings.to_dict(),
            "history": baseline.history, "test_accuracy": baseline.test_accuracy, "data": scenario.describe(),
            "pruning_history": baseline.pruning_history, "summary": summary,
        }, indent=1, default=float))
        publish_folder(tmp, folder, replace=True)


def load_adaptive_baseline(scenario, folder) -> Baseline:
    """The cached adaptive baseline in ``folder``: the architecture rebuilt by replaying its pruning history."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    model = scenario.build_model()
    history = meta.get("pruning_history") or []
    if history:
        replay_pruning(model, history, scenario.example_inputs(2))
        spec = scenario.prune_spec(model)
        if spec.after_prune is not None:
            spec.after_prune(model)
    try:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
    except RuntimeError as exc:
        raise CheckpointError(f"the cached adaptive baseline {folder.name} does not fit its architecture: "
                              f"{str(exc).splitlines()[0]}") from None
    model.eval()
    settings = AdaptiveSettings.from_dict(meta["adaptive"])
    return Baseline(scenario, model, meta["key"], settings.train_settings(), meta["history"],
                    meta["test_accuracy"], True, folder, adaptive=meta["adaptive"], pruning_history=history,
                    summary=meta.get("summary") or {})
