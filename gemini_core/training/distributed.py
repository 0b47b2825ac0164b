"""Distributed training: torch.distributed + DistributedDataParallel, launched with torchrun.

``python -m gemini_core train --adaptive --nproc N ...`` re-launches itself on this machine as

    python -m torch.distributed.run --nnodes 1 --nproc-per-node N \\
        --master-addr 127.0.0.1 --master-port <free port> -m gemini_core.distributed train --adaptive ...

and each worker (this module's ``main``) joins the process group from torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): gloo on CPU, NCCL on
GPU (one GPU per local rank). The training itself is ``adaptive.train_adaptive``, which sees the
process group and wraps the model in DistributedDataParallel. Rank 0 alone writes the cached
checkpoint, prints progress and the JSON result.

Several machines: start the same worker on every node with torchrun (``--nproc`` is for one machine)::

    torchrun --nnodes 2 --node-rank R --nproc-per-node K --master-addr HOST --master-port P \\
        -m gemini_core.distributed train --adaptive --scenario digits --target-ratio 0.5 ...
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from gemini_core.errors import GeminiError


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for torchrun's rendezvous on this machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (workers must not launch again)."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item == "--nproc":
            skip = True
            continue
        if item.startswith("--nproc="):
            continue
        out.append(item)
    return out


def launch_command(argv: list[str], nproc: int, port: int | None = None) -> list[str]:
    """The torchrun command line that runs ``python -m gemini_core <argv>`` on ``nproc`` local workers."""
    if int(nproc) < 1:
        raise GeminiError(f"--nproc must be at least 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(int(nproc)),
            "--master-addr", "127.0.0.1", "--master-port", str(port or free_port()),
            "-m", "gemini_core.distributed", *strip_nproc(argv)]


def launch(argv: list[str], nproc: int) -> int:
    """Run ``argv`` (a ``gemini_core`` command line) on ``nproc`` processes of this machine; its exit code."""
    env = dict(os.environ)
    # Each worker gets an equal share of the cores (torchrun would set 1 and warn about it).
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(nproc))))
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    done = subprocess.run(launch_command(argv, nproc), env=env)
    return done.returncode


def in_worker() -> bool:
    """Whether this process was started by torchrun (it sets these variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def init_worker(device: str | None = None) -> torch.device:
    """Join the process group torchrun set up; the device this rank trains on.

    NCCL with ``cuda:LOCAL_RANK`` when CUDA is present (and ``device`` does not say cpu), else gloo on CPU.
    """
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    wants_cpu = device is not None and str(device).startswith("cpu")
    if torch.cuda.is_available() and not wants_cpu:
        if local_rank >= torch.cuda.device_count():
            raise GeminiError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                              "use fewer processes per node or --device cpu")
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
        backend = "nccl"
    else:
        chosen = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
    # A 1-input-channel conv's gradient can come with other (equally valid) strides than DDP's bucket
    # view; DDP copies it and warns on every backward. Harmless, and noise in the progress output.
    import warnings

    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return chosen


def main(argv=None) -> int:
    """Worker entry point: ``python -m gemini_core.distributed train --adaptive ...`` under torchrun."""
    import torch.distributed as dist

    from gemini_core.cli.main import main as cli_main

    argv = strip_nproc(list(sys.argv[1:] if argv is None else argv))
    if not in_worker():
        print("error: gemini_core.distributed is started by torchrun; run `python -m gemini_core train --adaptive "
              "--nproc N ...` or torchrun ... -m gemini_core.distributed train --adaptive ...", file=sys.stderr)
        return 2
    if not argv or argv[0] != "train" or "--adaptive" not in argv:
        print("error: distributed workers run `train --adaptive ...`", file=sys.stderr)
        return 2
    try:
        return cli_main(argv)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
