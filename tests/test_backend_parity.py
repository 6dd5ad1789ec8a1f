"""The same experiment file behaves the same on both backends where the loop, not the framework,
decides: the learning-rate sequence, and the epoch early stopping ends on (with the best weights
restored through the real backend)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rayfit import Trainer
from rayfit.backends import build_backend
from rayfit.callbacks.early_stopping import EarlyStopping
from rayfit.config import load_experiment
from rayfit.data import load_dataset
from rayfit.loop import Callback, EpochLoop


@pytest.mark.parametrize(
    "schedule",
    [
        {"name": "onecycle", "interval": "step", "max_lr": 0.01},
        {"name": "cosine", "T_max": 3, "warmup": 2, "eta_min": 0.0001},
    ],
    ids=["onecycle-per-step", "cosine-warmup-per-epoch"],
)
def test_same_learning_rate_sequence_on_both_backends(make_experiment, schedule):
    experiment = make_experiment(schedule=schedule, trainer={"epochs": 4, "accumulate": 2},
                                 optimizer={"param_groups": [{"module": "0", "lr": 0.01}]})
    per_backend = {}
    for backend in ("torch", "tensorflow"):
        trainer = Trainer(experiment, overrides=[f"backend={backend}", f"name={backend}"])
        seen: list[float] = []
        trainer.register_progress_callback(lambda epoch, metrics, seen=seen: seen.append(metrics["learning_rate"]))
        history = trainer.fit().history
        assert seen == [row["learning_rate"] for row in history]
        per_backend[backend] = seen
    assert per_backend["torch"] == per_backend["tensorflow"]
    assert len(set(per_backend["torch"])) == 4  # the schedule moved every epoch


class ScriptedValidation:
    """A real backend whose validation loss follows a script (everything else is the backend's)."""

    def __init__(self, backend: Any, val_losses: list[float]) -> None:
        self._backend, self._val_losses, self._epoch = backend, val_losses, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def begin_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        self._backend.begin_epoch(epoch)

    def evaluate(self, split: str) -> dict[str, float]:
        return {"loss": self._val_losses[self._epoch]}


class SnapshotWeights(Callback):
    def __init__(self) -> None:
        self.after_epoch: list[list[np.ndarray]] = []

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        self.after_epoch.append([np.asarray(w) for w in _arrays(loop.backend.get_weights())])


def _arrays(weights: Any) -> list[Any]:
    return [w.numpy() for w in weights.values()] if isinstance(weights, dict) else list(weights)


def test_early_stopping_epoch_and_restored_weights_on_a_real_backend(make_experiment, backend):
    cfg = load_experiment(make_experiment(backend=backend, trainer={"epochs": 6}))
    real = build_backend(cfg, load_dataset(cfg.data, cfg.trainer.seed))
    snapshots = SnapshotWeights()
    loop = EpochLoop(ScriptedValidation(real, [1.0, 0.5, 0.6, 0.7, 0.4, 0.3]),
                     [snapshots, EarlyStopping(patience=2)], epochs=6)
    state = loop.train()
    assert state.epoch == 4 and state.stop_reason.startswith("early stopping: val_loss")
    restored = _arrays(real.get_weights())
    assert not all(np.array_equal(a, b) for a, b in zip(restored, snapshots.after_epoch[-1]))
    for a, b in zip(restored, snapshots.after_epoch[1]):  # epoch 2 was the best
        np.testing.assert_array_equal(a, b)
