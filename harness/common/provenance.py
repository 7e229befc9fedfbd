"""Where a number comes from: the harness's commit, the packages, and the machine.

Every cell's run.json, every profile and every bench report records these facts, from here.
"""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("torch", "numpy", "pandas", "pyarrow", "hydra-core", "omegaconf", "scipy")
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the harness checkout; ('unknown', False) outside a git checkout.

    Dirty means tracked code or configuration differs from the commit. The committed reports
    (``reports/``) are outputs: regenerating them while a sweep runs does not make it dirty.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                 ".", ":(exclude)reports"],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
                                check=True).stdout.strip()
        return commit, bool(status)
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(device_name: str, threads: int) -> dict[str, Any]:
    commit, dirty = git_state()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": package_versions(),
        "threads": threads,
        "device_name": device_name,
        "hostname": platform.node(),
        "platform": platform.platform(),
        "utc_time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def git_commit() -> str | None:
    """The commit of the harness checkout, or None outside a git checkout."""
    commit = git_state()[0]
    return None if commit == "unknown" else commit


# --- the machine ----------------------------------------------------------------------------------

#: CPU flags that decide which integer/low-precision GEMMs are fast (x86 and Arm names).
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
              "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve", "sve2")


@functools.lru_cache(maxsize=1)
def cpu_facts() -> dict[str, Any]:
    """CPU model, torch's SIMD dispatch level and the GEMM-relevant flags this CPU reports."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch
        capability = "unknown"
    return {"cpu_model": model or platform.processor() or platform.machine(),
            "cpu_arch": platform.machine(),
            "cpu_capability": capability,
            "cpu_flags": [f for f in SIMD_FLAGS if f in flags] if flags else ["unreadable"]}


def machine_facts(device: torch.device) -> dict[str, Any]:
    """What run.json's provenance records about the machine beside the device name."""
    facts = dict(cpu_facts())
    if device.type == "cuda":
        cc = torch.cuda.get_device_capability(device)
        facts["cuda_capability"] = f"{cc[0]}.{cc[1]}"
    return facts
