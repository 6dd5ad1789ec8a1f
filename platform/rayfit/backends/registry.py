"""The backends rayfit knows, in one place: a name mapped to where each of its parts lives.

Adding a backend is a package with these parts and one entry here; everything else (config,
build_backend, predict, export, the Ray launcher and worker) looks it up. Parts are import
paths, imported when used, so a torch run never loads TensorFlow.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BackendEntry:
    """Where a backend's parts are, as 'module:attribute' (a module alone for the exporter)."""

    backend: str  # the TrainingBackend class: (cfg, data, device) -> backend
    predictor: str  # (cfg, info, model folder) -> outputs of encoded rows, for predict/evaluate
    exporter: str  # module with FORMATS and export(cfg, info, model folder, format, folder)
    model_file: str  # the exported model's file in a run's model/ folder
    ray_trainer: str  # the Ray Train trainer class that starts its workers
    distributions: tuple[str, ...]  # what its exported model needs installed (the MLflow model's pins)
    worker_device: str | None = None  # () -> a Ray worker's device; None: the backend picks
    driver_device: str | None = None  # () -> where the driver builds a session only to check it
    streams: bool = False  # trains on data.streaming (rows streamed by Ray Data)

    def load(self, part: str) -> Any:
        """The object the import path in field `part` names."""
        module, _, attribute = getattr(self, part).partition(":")
        loaded = importlib.import_module(module)
        return getattr(loaded, attribute) if attribute else loaded


BACKENDS = {
    "torch": BackendEntry(
        backend="rayfit.backends.torch_backend:TorchBackend",
        predictor="rayfit.backends.torch_backend:load_predictor",
        exporter="rayfit.backends.torch_export",
        model_file="model.pt",
        ray_trainer="ray.train.torch:TorchTrainer",
        distributions=("torch",),
        worker_device="ray.train.torch:get_device",
        driver_device="rayfit.backends.torch_backend:meta_device",
        streams=True,
    ),
    "tensorflow": BackendEntry(
        backend="rayfit.backends.tf_backend:TFBackend",
        predictor="rayfit.backends.tf_backend:load_predictor",
        exporter="rayfit.backends.tf_export",
        model_file="model.keras",
        ray_trainer="ray.train.tensorflow:TensorflowTrainer",  # sets the TF_CONFIG the strategy reads
        distributions=("tensorflow-cpu", "keras"),
        streams=True,
    ),
}
NAMES = tuple(BACKENDS)
