"""The device the engine runs on, and how to describe it next to every figure."""
from __future__ import annotations

import contextlib
import os
import platform
import socket
from functools import lru_cache
from typing import Iterator

import torch

from gemini_core.errors import ConfigError


def pick_device(preferred: str | None = None) -> torch.device:
    """CUDA when present (unless ``GEMINI_DEVICE`` or ``preferred`` says otherwise), else CPU."""
    choice = preferred or os.environ.get("GEMINI_DEVICE")
    if choice:
        return check_device(choice)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(choice) -> torch.device:
    """``choice`` as a device this machine has; ConfigError naming the problem otherwise."""
    try:
        device = torch.device(str(choice).strip())
    except (RuntimeError, ValueError):
        raise ConfigError(f"device {str(choice)!r} is not one of cpu, cuda, cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(choice)!r} asks for CUDA, but this machine has no usable CUDA GPU "
                              "(or torch is a CPU-only build); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {str(choice)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type != "cpu":
        raise ConfigError(f"device {str(choice)!r} is not one of cpu, cuda, cuda:N")
    return device


def max_threads() -> int:
    """The most torch CPU threads a command may ask for: 4 per core, at least 64."""
    return max(64, 4 * (os.cpu_count() or 1))


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Instruction-set flags that decide which CPU kernels run (and so how fast a point is).
SIMD_FLAG_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "amx", "vnni", "bf16", "asimd", "sve", "neon")


@lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """The CPU's vector-instruction flags from /proc/cpuinfo (``flags`` on x86, ``Features`` on ARM)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = line.split(":", 1)[1].split()
                    return tuple(sorted(f for f in flags if f.startswith(SIMD_FLAG_PREFIXES)))
    except OSError:
        pass
    return ()


def _count(value) -> int | None:
    """A positive whole count, or None for missing / NaN (table rows hold NaN for absent figures)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number == number and number > 0 else None


def busy_warning(info: dict) -> str | None:
    """A warning when the machine's load was above its cores while a figure was measured, else None."""
    load, cores = info.get("load_avg_1m"), _count(info.get("cores"))
    try:
        load = float(load)
    except (TypeError, ValueError):
        return None
    if cores and load == load and load > cores:
        return f"measured on a busy machine (load {float(load):.1f} on {int(cores)} cores): latency is inflated"
    return None


def device_label(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{cpu_model()}"


def measurement_label(device: torch.device | str) -> str:
    """What decides a latency besides the model: the device, and on CPU the torch thread count.

    Part of a stored point's key, so a point measured with 1 thread is never reused as if it
    had been measured with 2.
    """
    device = torch.device(device)
    label = device_label(device)
    return label if device.type == "cuda" else f"{label} x{torch.get_num_threads()} threads"


def compute_threads_for_app(cores: int | None = None) -> int:
    """torch CPU threads for the dashboard's background jobs.

    ``GEMINI_THREADS`` wins when set. Otherwise one core is left to the UI (server and browser):
    torch's OpenMP threads wait on each other whenever a core is taken, so on 2 cores two threads
    next to a live page trained the digits baseline 2-4x slower than one thread did.
    """
    env = os.environ.get("GEMINI_THREADS", "").strip()
    if env:
        try:
            threads = int(env)
        except ValueError:
            threads = 0
        if threads < 1:
            raise ConfigError(f"GEMINI_THREADS={env!r} must be a whole number of at least 1")
        return threads
    return max(1, (cores or available_cores()) - 1)


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the whole machine)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_compute_threads(threads: int | None) -> int:
    """Set torch's CPU threads (process-wide) and return the number in force. None keeps torch's choice."""
    if threads:
        if threads < 1:
            raise ConfigError(f"threads {threads} must be at least 1")
        if threads > max_threads():
            raise ConfigError(f"threads {threads} is more than this machine can use (at most {max_threads()}: "
                              f"{os.cpu_count()} cores)")
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


@contextlib.contextmanager
def compute_threads(threads: int | None) -> Iterator[int]:
    """torch CPU threads set to ``threads`` inside (None: unchanged), restored after; yields the number in force."""
    previous = torch.get_num_threads()
    try:
        yield set_compute_threads(threads)
    finally:
        torch.set_num_threads(previous)


def condition_warnings(record: dict, compared: dict | None = None) -> list[str]:
    """What makes a point's latency doubtful: a busy machine, or another thread count (or CPU) than the
    point it is compared with."""
    warnings = []
    busy = busy_warning(record)
    if busy:
        warnings.append(busy)
    if compared is not None and record is not compared:
        mine, theirs = _count(record.get("threads")), _count(compared.get("threads"))
        if mine and theirs and mine != theirs:
            warnings.append(f"measured at {int(mine)} threads, the point it is compared with at {int(theirs)}: "
                            "latencies are not comparable")
        if isinstance(record.get("cpu"), str) and isinstance(compared.get("cpu"), str) \
                and record["cpu"] != compared["cpu"]:
            warnings.append(f"measured on {record['cpu']}, the point it is compared with on {compared['cpu']}")
    return warnings


def load_average_1m() -> float | None:
    """The machine's 1-minute load average, stored next to latencies (a busy machine measures slower)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def device_info(device: torch.device | str | None = None) -> dict:
    """What the sidebar and every record say about where a figure was measured."""
    device = torch.device(device) if device is not None else pick_device()
    info = {
        "device": device_label(device),
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": available_cores(),
        "load_avg_1m": load_average_1m(),
        "cpu_flags": list(cpu_flags()),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_name"] = props.name
        info["gpu_memory_bytes"] = int(props.total_memory)
    return info
