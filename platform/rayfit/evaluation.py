"""`rayfit evaluate RUN`: the test metrics of a finished run's exported model on its test split."""

from __future__ import annotations

from pathlib import Path

from rayfit.backends.torch_backend import TorchBackend
from rayfit.data import load_dataset
from rayfit.errors import DataError
from rayfit.inference import SavedModel, resolve_run
from rayfit.loop import EpochLoop


def evaluate_run(run: str | Path) -> dict[str, float]:
    """Rebuild the run's data split (deterministic from its config and seed) and score the model."""
    saved = SavedModel(resolve_run(run))
    cfg = saved.config
    data = load_dataset(cfg.data, cfg.trainer.seed)
    backend = TorchBackend(cfg, data)
    backend.set_weights(saved.weights)
    metrics = EpochLoop(backend, [], cfg.trainer.epochs).evaluate()
    if not metrics:
        raise DataError(f"{cfg.data.source}: the run has no test split (data.test_fraction is 0)")
    return metrics
