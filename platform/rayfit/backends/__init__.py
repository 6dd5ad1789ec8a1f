"""Framework backends: each supplies the steps, state and export that the loop calls.

Each is imported only when a run asks for it, so a torch run never loads TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rayfit.config import ExperimentConfig
from rayfit.data import DataInfo, Prepared
from rayfit.safe_yaml import load_yaml

MODEL_FILES = {"torch": "model.pt", "tensorflow": "model.keras"}  # in a run's model/ folder


def build_backend(cfg: ExperimentConfig, data: Prepared, device: Any = None) -> Any:
    """The backend cfg.backend names, on `device` (None: what the config asks for)."""
    if cfg.backend == "tensorflow":
        from rayfit.backends.tf_backend import TFBackend

        return TFBackend(cfg, data, device)
    from rayfit.backends.torch_backend import TorchBackend

    return TorchBackend(cfg, data, device)


def driver_device(cfg: ExperimentConfig) -> Any:
    """Where the driver builds a session only to check it when workers train: torch's meta
    device (no memory, no GPU needed); None (the config's own device) for TensorFlow."""
    if cfg.backend == "torch":
        import torch

        return torch.device("meta")
    return None


def load_predictor(cfg: ExperimentConfig, info: DataInfo, folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Outputs of the model exported in `folder` for encoded rows, by the run's backend."""
    if cfg.backend == "tensorflow":
        from rayfit.backends.tf_backend import load_predictor as load
    else:
        from rayfit.backends.torch_backend import load_predictor as load
    return load(cfg, info, folder)


def exported_model(folder: Path) -> Path | None:
    """The model file in a run's model/ folder, named by the backend in its config.yaml; None
    until the run has exported it (config.yaml is written after the model)."""
    config = folder / "config.yaml"
    if not config.is_file():
        return None
    try:
        backend = (load_yaml(config.read_text()) or {}).get("backend", "torch")
    except (yaml.YAMLError, AttributeError):
        return None
    path = folder / MODEL_FILES.get(backend, MODEL_FILES["torch"])
    return path if path.is_file() else None
