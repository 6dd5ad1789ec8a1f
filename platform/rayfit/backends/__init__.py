"""Framework backends: each supplies the steps, state and export that the loop calls.

Which backends exist, and where their parts are, is registry.BACKENDS; each is imported only
when a run asks for it, so a torch run never loads TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from rayfit.backends.registry import BACKENDS
from rayfit.safe_yaml import load_yaml

if TYPE_CHECKING:  # not imported at run time: config.py reads the registry through this package
    from rayfit.backends.contract import TrainingBackend
    from rayfit.config import ExperimentConfig
    from rayfit.data import DataInfo, Prepared
    from rayfit.data.streaming import StreamedData

MODEL_FILES = {name: entry.model_file for name, entry in BACKENDS.items()}  # in a run's model/ folder


def build_backend(cfg: ExperimentConfig, data: Prepared | StreamedData, device: Any = None) -> TrainingBackend:
    """The backend cfg.backend names, on `device` (None: what the config asks for)."""
    return BACKENDS[cfg.backend].load("backend")(cfg, data, device)


def driver_device(cfg: ExperimentConfig) -> Any:
    """Where the driver builds a session only to check it when workers train (torch: the meta
    device, no memory and no GPU needed); None: the config's own device."""
    entry = BACKENDS[cfg.backend]
    return entry.load("driver_device")() if entry.driver_device else None


def worker_device(cfg: ExperimentConfig) -> Any:
    """A Ray Train worker's device as Ray assigned it (torch), or None where the backend picks."""
    entry = BACKENDS[cfg.backend]
    return entry.load("worker_device")() if entry.worker_device else None


def load_predictor(cfg: ExperimentConfig, info: DataInfo, folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Outputs of the model exported in `folder` for encoded rows, by the run's backend."""
    return BACKENDS[cfg.backend].load("predictor")(cfg, info, folder)


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
