"""Trainer: the Python API. Checks the input, then runs the loop in this process or in Ray Train
workers, streams its events to this process's sinks, and can pause or cancel it from any thread."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rayfit.backends import driver_device
from rayfit.callbacks.checkpoint import CheckpointIndex
from rayfit.config import ExperimentConfig, load_experiment
from rayfit.control import RunControl
from rayfit.data.streaming import StreamedData, plan_stream
from rayfit.errors import CheckpointError
from rayfit.events import Event, Sink, epoch_sink
from rayfit.loop import Callback
from rayfit.paths import resolve_paths
from rayfit.progress import ProgressDisplay
from rayfit.run_folder import RunFolder
from rayfit.session import FitResult, Session

__all__ = ["FitResult", "Trainer"]


class Trainer:
    """`Trainer(config).fit()` trains one experiment; re-running it resumes an unfinished run.

    `callbacks`: `rayfit.loop.Callback` objects run inside the loop, on every rank: in this process
    when it trains here, in each Ray Train worker otherwise (so they must be picklable).
    `register_progress_callback` and `register_event_callback` functions run in THIS process, fed by
    the run's event stream wherever the loop runs. `pause()`/`cancel()` may be called from any thread
    while `fit()` runs (or from another process: `rayfit.control.RunControl(run_dir).request(...)`).
    """

    def __init__(
        self,
        config: ExperimentConfig | str | Path,
        overrides: list[str] | None = None,
        resume: bool = False,
        callbacks: list[Callback] | None = None,
        progress: bool = True,
        extend: bool = False,
    ) -> None:
        """`extend`: train a finished run on to a larger trainer.epochs from its last checkpoint."""
        cfg = config if isinstance(config, ExperimentConfig) else load_experiment(config, overrides)
        # Workers run elsewhere (another folder, another node): every path is made absolute here.
        self.config = resolve_paths(cfg)
        self.resume = resume
        self.extend = extend
        self.callbacks = list(callbacks or [])
        self.run = RunFolder.for_config(self.config)
        self.control = RunControl(self.run.path)
        self.display = ProgressDisplay(self.config.trainer.progress) if progress else None
        self._sinks: list[Sink] = []

    def register_progress_callback(self, fn: Callable[[int, dict[str, float]], None]) -> None:
        """Call `fn(epoch, metrics)` in this process after each epoch, with plain float metrics."""
        self._sinks.append(epoch_sink(fn))

    def register_event_callback(self, fn: Callable[[Event], None]) -> None:
        """Call `fn(event)` in this process for every event: start, batch (a few a second), epoch, end."""
        self._sinks.append(fn)

    def pause(self) -> None:
        """Checkpoint at the next batch boundary and stop; `fit()` returns `interrupted=True`."""
        self.control.request("pause", "pause requested")

    def cancel(self) -> None:
        """Stop at the next batch boundary for good; checkpoints are kept, nothing is exported."""
        self.control.request("cancel", "cancel requested")

    def fit(self) -> FitResult:
        with self.run.lock():  # one process per run; a crash releases it
            return self._fit()

    def _fit(self) -> FitResult:
        cfg, run = self.config, self.run
        run.check_resumable(cfg, extend=self.extend)
        latest = CheckpointIndex(run.checkpoints).latest
        for flag, wanted in (("--resume", self.resume), ("--extend", self.extend)):
            if wanted and latest is None:
                raise CheckpointError(f"{run.path}: {flag} was given but there is no checkpoint to resume")
        sinks = ([self.display] if self.display is not None else []) + self._sinks
        # Building the session checks data, model, optimizer and schedule before anything is written
        # (on torch's meta device when workers train: no memory used, and the driver may have no GPU).
        device = driver_device(cfg) if cfg.scaling.distributed else None
        # Streamed data is checked and its statistics fitted here, in one pass over the files.
        data = plan_stream(cfg.data, cfg.trainer.seed) if cfg.data.streaming else None
        session = Session(cfg, run, device=device, data=data, callbacks=self.callbacks, sinks=sinks,
                          control=self.control, signals=True, extend=self.extend)
        try:
            if not cfg.scaling.distributed:
                if data is not None:
                    stream_here(cfg, data)
                return session.fit(latest)
            from rayfit.distributed.launch import fit_with_ray

            del session  # the workers build their own
            return fit_with_ray(cfg, run, sinks, self.callbacks, self.control, self.extend, stream=data)
        finally:
            if self.display is not None:
                self.display.close()


def stream_here(cfg: ExperimentConfig, data: StreamedData) -> None:
    """Streaming in this process: Ray Data (on a local Ray, or scaling.address) reads the rows."""
    from rayfit.data.ray_feed import split_datasets
    from rayfit.distributed.launch import connect

    connect(cfg.scaling)
    datasets = split_datasets(data)
    data.shard = lambda split: datasets[split].iterator()
