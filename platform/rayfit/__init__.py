"""rayfit: one epoch loop for PyTorch models, driven by YAML experiment files, tracked in MLflow.

The public names load lazily, so `rayfit --help` or a bad experiment file answers without first
importing torch, MLflow and Ray (seconds).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExperimentConfig": "rayfit.config",
    "load_experiment": "rayfit.config",
    "Trainer": "rayfit.trainer",
    "FitResult": "rayfit.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rayfit' has no attribute {name!r}")
