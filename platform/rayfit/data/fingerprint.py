"""Fingerprints of the rows a run was trained and tested on, saved with its model: `rayfit evaluate`
rebuilds the split from the data files and warns when they no longer give the same rows."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

Rows = tuple[pd.DataFrame, np.ndarray]  # cleaned feature columns, encoded target


def row_hashes(rows: Rows) -> np.ndarray:
    """One 64-bit hash per row, of its feature values and its target."""
    x, y = rows
    features = pd.util.hash_pandas_object(x, index=False).to_numpy()
    return features * np.uint64(31) + pd.util.hash_array(np.asarray(y))  # wraps around: a hash


def digest(hashes: np.ndarray) -> str:
    """Order-free: the same rows in another order give the same digest."""
    return hashlib.sha256(np.sort(hashes).tobytes()).hexdigest()[:16]


def fingerprint(splits: Mapping[str, Rows]) -> dict[str, str]:
    """`rows`: every row of every split; `test_rows`: the rows of the test split."""
    hashes = {role: row_hashes(rows) for role, rows in splits.items()}
    every = np.concatenate(list(hashes.values()))
    return {"rows": digest(every), "test_rows": digest(hashes.get("test", every[:0]))}


def mismatch(saved: Mapping[str, str], now: Mapping[str, str]) -> str | None:
    """What differs between the fingerprint saved at training and the one of the data now."""
    if not saved or not now or saved.get("test_rows") == now.get("test_rows"):
        return None
    if saved.get("rows") == now.get("rows"):
        return "the same rows as at training, in another order: the test split now holds other rows"
    return "not the rows the run was trained on: the test split is another set"
