"""Live progress, drawn from the run's events wherever the loop runs: rich epoch and batch bars
with ETA and metrics on a TTY, one line per epoch otherwise (CI logs, `ray job submit`, files)."""

from __future__ import annotations

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

from rayfit.events import Event

SHOWN = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate")


def format_metrics(metrics: dict[str, float], keys: tuple[str, ...] = SHOWN) -> str:
    return " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)


def epoch_line(event: Event) -> str:
    metrics = event["metrics"]
    return (
        f"epoch {event['epoch']}/{event['epochs']} {format_metrics(metrics)} "
        f"{metrics.get('epoch_time_s', 0.0):.2f}s {metrics.get('samples_per_s', 0.0):.0f} samples/s"
    )


class ProgressDisplay:
    """An event sink. mode: auto (bars on a terminal, lines otherwise), bar, log or none."""

    def __init__(self, mode: str = "auto", console: Console | None = None) -> None:
        self.console = console or Console()
        self.bars = mode == "bar" or (mode == "auto" and self.console.is_terminal)
        self.silent = mode == "none"
        self._progress: Progress | None = None
        self._epochs: TaskID | None = None
        self._batches: TaskID | None = None
        self._batch_total = 0

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event['type']}", None)
        if handler is not None and not self.silent:
            handler(event)

    def _on_start(self, event: Event) -> None:
        if not self.bars:
            return
        self.close()
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
        self._epochs = self._progress.add_task("epoch", total=event["epochs"], completed=event["epoch"], metrics="")
        self._batch_total = event["batches"]
        self._batches = self._progress.add_task("batch", total=event["batches"], completed=event["batch"], metrics="")
        self._progress.refresh()

    def _on_batch(self, event: Event) -> None:
        if self._progress is not None:
            running = format_metrics(event["metrics"], ("train_loss",))
            self._progress.update(self._batches, total=event["batches"], completed=event["batch"], metrics=running)
            self._progress.refresh()

    def _on_epoch(self, event: Event) -> None:
        if self._progress is None:
            self.console.print(epoch_line(event), highlight=False, markup=False, soft_wrap=True)
            return
        shown = format_metrics(event["metrics"], ("val_loss", "val_accuracy"))
        self._progress.update(self._epochs, completed=event["epoch"], metrics=shown)
        self._progress.update(self._batches, completed=self._batch_total)
        self._progress.console.print(epoch_line(event), highlight=False, markup=False)
        self._progress.refresh()

    def _on_end(self, event: Event) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
