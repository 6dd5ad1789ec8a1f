"""Replacing a file whole: a reader, or a kill at any moment, sees the old file or the new one."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write `data` to a temp file beside `path`, fsync it when `durable`, then rename it over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)
