"""A checkpoint as one .npz file that loads without pickle: the arrays as npz members and
everything else (loop state, history, callback state, RNG) as JSON in a uint8 member.

Loading runs no code from the file (np.load with allow_pickle=False; json), so a checkpoint from
elsewhere is as safe to open as torch's weights_only files.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from rayfit.errors import CheckpointError, first_line

ARRAY_KEY = "__array__"  # {"__array__": "a3"} in the JSON stands for npz member a3
JSON_MEMBER = "__json__"


def arrays_bytes(payload: dict[str, Any]) -> bytes:
    """The .npz file's content for `payload` (plain data and numpy arrays), in memory."""
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(payload, arrays)
    text = json.dumps(tree).encode()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{JSON_MEMBER: np.frombuffer(text, dtype=np.uint8)})
    return buffer.getvalue()


def load_arrays(path: Path) -> dict[str, Any]:
    """The payload arrays_bytes serialized; any failure is a one-line CheckpointError naming the file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with np.load(path, allow_pickle=False) as members:
            arrays = {name: members[name] for name in members.files}
        tree = json.loads(arrays.pop(JSON_MEMBER).tobytes())
        return _decode(tree, arrays)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable rayfit checkpoint ({first_line(exc)})") from exc


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {ARRAY_KEY: key}
    if isinstance(value, dict):
        return {str(k): _encode(v, arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if set(value) == {ARRAY_KEY}:
            return arrays[value[ARRAY_KEY]]
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value
