"""Live progress: rich epoch and batch bars with ETA and metrics on a TTY, one log line per epoch
otherwise (CI logs, `ray job submit`, files)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rayfit.loop import Callback, EpochLoop

SHOWN = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate")


def format_metrics(metrics: dict[str, float], keys: tuple[str, ...] = SHOWN) -> str:
    return " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)


class ProgressBar(Callback):
    """Bars redraw at most every `refresh_s`, so the per-batch cost is one clock read."""

    def __init__(self, mode: str = "auto", refresh_s: float = 0.5) -> None:
        self.console = Console(stderr=False)
        self.bars = mode == "bar" or (mode == "auto" and self.console.is_terminal)
        self.silent = mode == "none"  # no bars and no epoch lines
        self.refresh_s = refresh_s
        self._next_draw = 0.0
        self._progress: Progress | None = None
        self._epochs: TaskID | None = None
        self._batches: TaskID | None = None

    def on_train_begin(self, loop: EpochLoop) -> None:
        if not self.bars:
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
            auto_refresh=False,
        )
        self._progress.start()
        self._epochs = self._progress.add_task(
            "epoch", total=loop.epochs, completed=loop.state.epoch, metrics=""
        )
        self._batches = self._progress.add_task(
            "batch", total=loop.backend.batches_per_epoch, metrics=""
        )

    def on_epoch_begin(self, loop: EpochLoop) -> None:
        if self._progress is not None:
            self._progress.reset(self._batches, completed=loop.state.batch_in_epoch, metrics="")
            self._progress.refresh()

    def on_batch_end(self, loop: EpochLoop) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if now >= self._next_draw:
            self._next_draw = now + self.refresh_s
            running = format_metrics(loop.backend.running_metrics(), ("train_loss",))
            self._progress.update(self._batches, completed=loop.state.batch_in_epoch, metrics=running)
            self._progress.refresh()

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        if self.silent:
            return
        line = (
            f"epoch {loop.state.epoch}/{loop.epochs} {format_metrics(metrics)} "
            f"{metrics['epoch_time_s']:.2f}s {metrics['samples_per_s']:.0f} samples/s"
        )
        if self._progress is None:
            print(line, flush=True)
            return
        shown = format_metrics(metrics, ("val_loss", "val_accuracy"))
        self._progress.update(self._epochs, completed=loop.state.epoch, metrics=shown)
        self._progress.update(self._batches, completed=loop.backend.batches_per_epoch)
        self._progress.console.print(line)
        self._progress.refresh()

    def on_train_end(self, loop: EpochLoop) -> None:
        self._close()

    def on_exception(self, loop: EpochLoop, exc: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
