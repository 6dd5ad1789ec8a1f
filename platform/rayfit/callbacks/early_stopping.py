"""Early stopping on a monitored metric, restoring the best weights whatever ended the run."""

from __future__ import annotations

from typing import Any

from rayfit.callbacks.monitor import improves, resolve_mode
from rayfit.errors import ConfigError
from rayfit.loop import Callback, EpochLoop


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    An epoch improves when it beats the best so far and, if set, the `baseline`. Epochs before
    `start_from_epoch` are not judged. `patience` 0 and 1 both stop at the first epoch that does not improve (as in Keras).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: int = 5,
        min_delta: float = 0.0,
        baseline: float | None = None,
        start_from_epoch: int = 0,
        restore_best: bool = True,
    ) -> None:
        self.monitor, self.mode = monitor, resolve_mode(monitor, mode)
        self.patience, self.min_delta, self.baseline = patience, min_delta, baseline
        self.start_from_epoch, self.restore_best = start_from_epoch, restore_best
        self.best: float | None = None
        self.best_epoch = 0
        self.wait = 0
        self.best_weights: Any = None

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        if self.monitor not in metrics:
            raise ConfigError(
                f"early_stopping.monitor: no metric {self.monitor!r}; "
                f"this run records {', '.join(sorted(metrics))}"
            )
        epoch = loop.state.epoch  # epochs completed, counting this one
        if epoch <= self.start_from_epoch:
            return
        value = metrics[self.monitor]
        if improves(value, self.best, self.mode, self.min_delta) and improves(
            value, self.baseline, self.mode
        ):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_weights = loop.backend.get_weights()
            return
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            best = "none" if self.best is None else f"{self.best:.6g} at epoch {self.best_epoch}"
            loop.state.stop(
                f"early stopping: {self.monitor} did not improve for {self.wait} epochs (best {best})"
            )

    def on_train_end(self, loop: EpochLoop) -> None:
        if loop.state.interrupted or not self.restore_best or self.best_weights is None:
            return
        loop.backend.set_weights(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.wait, self.best_weights = state["wait"], state["best_weights"]
