"""Writing files so that a reader never sees half of one: one atomic write for the harness.

``atomic_write`` writes into a fresh temporary file in the target's directory, flushes it to
disk and renames it into place: a killed process leaves the old file or the new one, never a
mix, and no temporary file behind (the store's cells, run.json, profiles, bench reports, sweep
bookkeeping all go through it).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def atomic_write(path: Path | str, write: Callable[[str], T]) -> T:
    """``write(tmp)`` a temporary file beside ``path``, fsync it, rename it to ``path``;
    returns what ``write`` returned. On any failure the temporary file is removed and the
    exception propagates (``path`` is untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        out = write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return out
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: Path | str, text: str) -> Path:
    """``text`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return Path(path)


def write_json(path: Path | str, payload: Any, **dumps: Any) -> Path:
    """``payload`` as JSON to ``path`` atomically (``dumps``: json.dumps options; values it
    cannot encode are written with ``str``)."""
    dumps.setdefault("default", str)
    return write_text(path, json.dumps(payload, **dumps) + ("\n" if dumps.get("indent") else ""))


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
