"""The device the engine runs on, and how to describe it next to every figure."""
from __future__ import annotations

import os
import platform
import socket
from functools import lru_cache

import torch


def pick_device(preferred: str | None = None) -> torch.device:
    """CUDA when present (unless ``GEMINI_DEVICE`` or ``preferred`` says otherwise), else CPU."""
    choice = preferred or os.environ.get("GEMINI_DEVICE")
    if choice:
        return torch.device(choice)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


def device_label(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{cpu_model()}"


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
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_name"] = props.name
        info["gpu_memory_bytes"] = int(props.total_memory)
    return info
