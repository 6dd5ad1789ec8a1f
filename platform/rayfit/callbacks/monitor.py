"""Which way a monitored metric improves, shared by early stopping, best-K checkpoints and plateau."""

from __future__ import annotations

import math

MAXIMISED = ("accuracy", "r2", "auc", "f1", "precision", "recall")


def resolve_mode(monitor: str, mode: str) -> str:
    """'auto' becomes 'max' for accuracy-like metrics and 'min' for losses and errors."""
    if mode != "auto":
        return mode
    return "max" if any(word in monitor for word in MAXIMISED) else "min"


def improves(value: float, reference: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """True when `value` beats `reference` by more than `min_delta` in direction `mode`."""
    if math.isnan(value):
        return False
    if reference is None:
        return True
    return value < reference - min_delta if mode == "min" else value > reference + min_delta
