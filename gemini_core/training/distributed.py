"""Distributed training: torch.distributed + DistributedDataParallel, launched with torchrun.

``python -m gemini_core train --adaptive --nproc N ...`` re-launches itself on this machine as

    python -m torch.distributed.run --nnodes 1 --nproc-per-node N \\
        --master-addr 127.0.0.1 --master-port <free port> -m gemini_core train --adaptive ...

and each worker (the same CLI command, which sees ``in_worker()``) joins the process group from
torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``):
gloo on CPU, NCCL on GPU (one GPU per local rank). The training itself is ``adaptive.train_adaptive``,
which sees the process group and wraps the model in DistributedDataParallel. Rank 0 alone
(``is_main_process()``) writes the cached checkpoint, prints progress and the JSON result.

Several machines: start the same command on every node with torchrun (``--nproc`` is for one machine)::

    torchrun --nnodes 2 --node-rank R --nproc-per-node K --master-addr HOST --master-port P \\
        -m gemini_core train --adaptive --scenario digits --target-ratio 0.5 ...

This module imports nothing from the CLI: the CLI calls it.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

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
            "-m", "gemini_core", *strip_nproc(argv)]


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


def _in_group() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """Rank 0 of the process group, or a plain single process: the one that prints and writes files."""
    return not _in_group() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if _in_group():
        dist.barrier()


def main_process_first(fn):
    """``fn()`` on rank 0 first, then on the other ranks; each rank's result.

    For work that fills a cache: rank 0 trains (or loads) and writes it, the others then read it.
    """
    result = fn() if is_main_process() else None
    barrier()
    if not is_main_process():
        result = fn()
    barrier()
    return result


def shutdown_worker() -> None:
    """Leave the process group at the end of a torchrun worker (no-op outside one)."""
    if _in_group():
        dist.destroy_process_group()


# -- inside a process group: what a training rank needs --------------------------------------------------
def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if _in_group():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce(values: list[float], device, op: str = "sum") -> list[float]:
    """``values`` reduced over the ranks (``sum``, ``max`` or ``min``) as float64; unchanged outside a group."""
    if dist_info()[1] == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return tensor.tolist()


def sync_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) everywhere: each rank updated its own while training."""
    if dist_info()[1] == 1:
        return
    for buffer in module.buffers():
        if buffer is not None:
            dist.broadcast(buffer.data, 0)


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``module`` inside a process group (else ``module`` itself).

    Every rank must hold the same architecture (pruning steps happen identically everywhere): a
    disagreement in parameter count is raised here rather than left to hang in a collective.
    """
    if dist_info()[1] == 1:
        return module
    shapes = sum(p.numel() for p in module.parameters())
    low, high = all_reduce([shapes], device, "min")[0], all_reduce([shapes], device, "max")[0]
    if low != high:
        raise RuntimeError(f"ranks disagree on the model after pruning ({int(low)} vs {int(high)} parameters)")
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda"
                                                     else None)
