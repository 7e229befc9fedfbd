"""Device, dtype and memory facts the runner and the feasibility checks need."""

from __future__ import annotations

import math
import os
import platform

import torch

from harness.common.errors import ConfigError, unknown

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEVICES = ("auto", "cpu", "cuda")


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise unknown("dtype", name, DTYPES)
    return DTYPES[name]


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cuda:<index>`` picks one of the GPUs."""
    text = str(name)
    base, sep, index = text.partition(":")
    if base not in DEVICES or (sep and base != "cuda"):
        raise unknown("device", name, [*DEVICES, "cuda:<index>"])
    if sep and not index.isdigit():
        raise ConfigError(f"device {text!r}: the index after 'cuda:' must be a non-negative "
                          "integer. Available: ['auto', 'cpu', 'cuda', 'cuda:<index>']")
    if base == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {text!r} requested but CUDA is not available. "
                          "Available: ['auto', 'cpu']")
    if sep and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"device {text!r}: there are {torch.cuda.device_count()} CUDA "
                          f"devices. Available: cuda:0 … cuda:{torch.cuda.device_count() - 1}")
    return torch.device(text)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so that a clock read after this call measures finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_memory_bytes(device: torch.device) -> int:
    """Free memory on ``device`` now: free GPU memory, or MemAvailable of the host."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    found = _meminfo("MemAvailable")
    return found if found is not None else int(os.sysconf("SC_PAGE_SIZE")
                                               * os.sysconf("SC_AVPHYS_PAGES"))


def total_memory_bytes(device: torch.device) -> int | None:
    """All memory of ``device``: the GPU's, or MemTotal of the host (None if unreadable)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return _meminfo("MemTotal")


def _meminfo(key: str) -> int | None:
    """A /proc/meminfo field in bytes (None where there is no /proc)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


#: Fraction of free memory a run may plan to use when ``memory_budget_gb`` is not given.
SAFE_MEMORY_FRACTION = 0.6


def memory_budget_bytes(device: torch.device, budget_gb: float | None) -> int:
    if budget_gb is None:
        return int(SAFE_MEMORY_FRACTION * available_memory_bytes(device))
    if not (isinstance(budget_gb, (int, float)) and math.isfinite(budget_gb) and budget_gb > 0):
        raise ConfigError(f"memory_budget_gb must be a finite number > 0 or null, got "
                          f"{budget_gb!r}")
    return int(budget_gb * 2**30)


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"
