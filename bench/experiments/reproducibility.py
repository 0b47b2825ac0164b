"""Does the digits baseline repeat bit for bit? Trains it several times in fresh homes and prints one JSON
line per training: device, caller's thread count, weight hash and test accuracy.

    python -m bench.experiments.reproducibility [--devices cpu,cuda] [--repeats 2]

Every training runs under ``training.loop.reproducible`` (deterministic algorithms, seeded state, the
settings' fixed thread count), so the hashes should agree per device; across devices they may not.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile

import torch

from gemini_core.scenarios import get_scenario
from gemini_core.training.baseline import get_baseline


def weights_hash(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    for device in args.devices.split(","):
        for repeat in range(args.repeats):
            torch.set_num_threads(1 + repeat % 2)  # the caller's thread count must not matter
            with tempfile.TemporaryDirectory() as home:
                os.environ["GEMINI_HOME"] = home
                scenario = get_scenario("digits")
                baseline = get_baseline(scenario, device=device)
                chosen = baseline.history[-1]
                print(json.dumps({"device": device, "caller_threads": torch.get_num_threads(),
                                  "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
                                  "torch": torch.__version__, "weights_sha256": weights_hash(baseline.model),
                                  "test_accuracy": baseline.test_accuracy, "test_n": len(baseline.test_correct),
                                  "kept_epoch": chosen.get("epoch"), "key": baseline.key}), flush=True)


if __name__ == "__main__":
    main()
