"""Sets the learning rate of every parameter group from a schedule, per epoch or per step."""

from __future__ import annotations

import math

from rayfit.loop import Callback, EpochLoop
from rayfit.schedules import Schedule


class LRScheduler(Callback):
    """Apply one schedule per parameter group. Schedules are pure functions of the position and
    the history, so nothing but the loop state is needed to resume them exactly."""

    def __init__(self, schedules: list[Schedule], interval: str, accumulate: int = 1) -> None:
        self.schedules, self.interval, self.accumulate = schedules, interval, accumulate
        self._position: int | None = None

    def _apply(self, loop: EpochLoop, position: int) -> None:
        if position != self._position:
            history = loop.state.history
            loop.backend.set_learning_rates([s(position, history) for s in self.schedules])
            self._position = position

    def on_epoch_begin(self, loop: EpochLoop) -> None:
        if self.interval == "epoch":
            self._apply(loop, loop.state.epoch)

    def on_batch_begin(self, loop: EpochLoop) -> None:
        if self.interval == "step":
            state = loop.state
            steps_per_epoch = math.ceil(loop.backend.batches_per_epoch / self.accumulate)
            self._apply(loop, state.epoch * steps_per_epoch + state.batch_in_epoch // self.accumulate)


def total_positions(interval: str, epochs: int, batches_per_epoch: int, accumulate: int) -> int:
    """How many positions a run's schedule covers: epochs, or optimizer steps."""
    return epochs if interval == "epoch" else epochs * math.ceil(batches_per_epoch / accumulate)
