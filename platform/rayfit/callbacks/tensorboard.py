"""TensorBoard: each epoch's metrics (learning rate included) as scalars, step = epoch, written by
tensorboardX, which needs neither TensorFlow nor the tensorboard package (view with `tensorboard
--logdir runs/NAME/tensorboard`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rayfit.loop import Callback, EpochLoop


class TensorBoardLogger(Callback):
    """Rank 0's epoch metrics into `folder`; a resumed run's first event tells TensorBoard to drop
    what the interrupted run wrote from that epoch on, so no epoch shows twice."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._writer: Any = None

    def on_train_begin(self, loop: EpochLoop) -> None:
        from tensorboardX import SummaryWriter  # imported only by runs that ask for TensorBoard

        resumed = loop.state.epoch > 0 or loop.state.mid_epoch
        self._writer = SummaryWriter(str(self.folder), purge_step=loop.state.epoch + 1 if resumed else None)

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        step = loop.state.epoch
        for key, value in metrics.items():
            if key != "epoch":
                self._writer.add_scalar(key, value, global_step=step)
        self._writer.flush()  # a killed run keeps every finished epoch

    def on_train_end(self, loop: EpochLoop) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def on_exception(self, loop: EpochLoop, exc: BaseException) -> None:
        self.on_train_end(loop)  # a paused or failed run closes its event file the same way
