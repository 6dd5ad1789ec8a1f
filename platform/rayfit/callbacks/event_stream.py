"""Emits the loop's events to the run's EventLog: start, batch progress (a few a second), epochs."""

from __future__ import annotations

import time

from rayfit.callbacks.checkpoint import Checkpointing
from rayfit.events import EventLog
from rayfit.loop import Callback, EpochLoop


class EventStream(Callback):
    """Runs after Checkpointing: an epoch's event names the checkpoint saved at its end, if any
    (written in the background: the file appears, complete, a moment later)."""

    BATCH_EVERY_S = 0.25  # batch progress is throttled; epochs and the start are always sent

    def __init__(self, events: EventLog, name: str, checkpointing: Checkpointing | None = None) -> None:
        self.events, self.name, self.checkpointing = events, name, checkpointing
        self._next_batch = 0.0

    def on_train_begin(self, loop: EpochLoop) -> None:
        state = loop.state
        self.events.emit(
            "start", name=self.name, epoch=state.epoch, epochs=loop.epochs, step=state.step,
            batch=state.batch_in_epoch, batches=loop.backend.batches_per_epoch,
        )

    def on_batch_end(self, loop: EpochLoop) -> None:
        now = time.monotonic()
        if now < self._next_batch:
            return
        self._next_batch = now + self.BATCH_EVERY_S
        state = loop.state
        self.events.emit(
            "batch", epoch=state.epoch + 1, batch=state.batch_in_epoch,
            batches=loop.backend.batches_per_epoch, step=state.step,
            metrics=loop.backend.running_metrics(),
        )

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        saved = self.checkpointing.last_saved if self.checkpointing is not None else None
        checkpoint = saved.path.name if saved and saved.step == loop.state.step and saved.path else None
        self.events.emit("epoch", epoch=loop.state.epoch, epochs=loop.epochs, metrics=metrics, checkpoint=checkpoint)
