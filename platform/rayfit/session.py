"""One training run's body, the same in this process and in each Ray Train worker: data, backend,
callbacks, restore, train, and the finish (test metrics, export, MLflow) on rank 0."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from rayfit import preflight
from rayfit.backends.batch_layout import BATCH_ORDER
from rayfit.backends import build_backend, exported_model
from rayfit.callbacks.checkpoint import Checkpointing
from rayfit.callbacks.early_stopping import EarlyStopping
from rayfit.callbacks.control import ControlRequests
from rayfit.callbacks.event_stream import EventStream
from rayfit.callbacks.history_logger import HistoryLogger
from rayfit.callbacks.lr_schedule import LRScheduler, total_positions
from rayfit.callbacks.nan_guard import NanGuard
from rayfit.callbacks.signals import GracefulStop
from rayfit.callbacks.tensorboard import TensorBoardLogger
from rayfit.callbacks.tracking import MlflowTracking
from rayfit.config import ExperimentConfig
from rayfit.control import RunControl
from rayfit.data import Prepared, load_dataset
from rayfit.data.streaming import StreamedData
from rayfit.errors import CheckpointError, ConfigError
from rayfit.events import EventLog, Sink
from rayfit.loop import Callback, EpochLoop, LoopState, TrainingFailed
from rayfit.metrics_report import final_test_metrics
from rayfit.paths import absolute_tracking_uri, portable
from rayfit.run_folder import RunFolder, write_atomic
from rayfit.schedules import build_schedule

log = logging.getLogger("rayfit")
RAY_VERSION = version("ray")  # recorded in checkpoints: snapshots are tied to Ray's minor version


@dataclass
class FitResult:
    """What a fit produced: the history, why it stopped, test metrics and where things are."""

    run_dir: Path
    history: list[dict[str, float]]
    stop_reason: str | None
    test_metrics: dict[str, float] = field(default_factory=dict)
    model_dir: Path | None = None
    mlflow_run_id: str | None = None
    interrupted: bool = False  # paused: the same command resumes it
    cancelled: bool = False  # stopped on request: checkpoints kept, nothing exported

    @property
    def status(self) -> str:
        return "paused" if self.interrupted else "cancelled" if self.cancelled else "finished"


class Session:
    """Builds everything a run needs from its config; constructing one validates config and data
    (loaded here, or `data` planned for streaming by the caller). `fit()` is the run sequence that
    every caller uses: in this process, in each Ray Train worker, in a sweep's trial.

    `rank` 0 writes (checkpoints, history, MLflow, events, the exported model) and reads the control
    channel; every rank trains. `callbacks` are the user's, run in the loop on every rank; `sinks`
    receive rank 0's events in this process (a caller whose loop runs elsewhere follows events.jsonl).
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        run: RunFolder,
        *,
        rank: int = 0,
        device: Any = None,  # the backend's own: a torch.device, or a TF device string
        reporter: Callable[[Checkpointing], Callback] | None = None,
        data: Prepared | StreamedData | None = None,
        callbacks: list[Callback] | None = None,
        sinks: list[Sink] | None = None,
        control: RunControl | None = None,
        signals: bool = False,
        extend: bool = False,
    ) -> None:
        self.cfg, self.run, self.rank = cfg, run, rank
        self.extend = extend  # a finished run trained for more epochs: its saved config is replaced
        writer = rank == 0
        # First: the tracking process starts (importing MLflow) while this one loads data and framework.
        self.tracking = (
            MlflowTracking(absolute_tracking_uri(cfg.tracking.uri), cfg.tracking.system_metrics_s,
                           cfg.tracking.wait_for_epochs)
            if cfg.tracking.enabled and writer
            else None
        )
        try:
            self._build(cfg, run, device, reporter, data, callbacks, sinks, control, signals)
        except BaseException:
            if self.tracking is not None:
                self.tracking.close()
            raise

    def _build(
        self,
        cfg: ExperimentConfig,
        run: RunFolder,
        device: Any,
        reporter: Callable[[Checkpointing], Callback] | None,
        data: Prepared | StreamedData | None,
        callbacks: list[Callback] | None,
        sinks: list[Sink] | None,
        control: RunControl | None,
        signals: bool,
    ) -> None:
        """Everything but tracking, which __init__ starts first and closes if this fails."""
        writer = self.rank == 0
        self.data = data if data is not None else load_dataset(cfg.data, cfg.trainer.seed)
        self.backend = build_backend(cfg, self.data, device)
        if self.backend.global_batch > self.data.train_rows:
            raise ConfigError(
                f"trainer.batch_size: {cfg.trainer.batch_size} x {self.backend.world_size} worker(s) "
                f"is larger than the {self.data.train_rows} training rows"
            )
        self.data_info = self.data.info.to_dict()
        ck = cfg.checkpoint
        self.checkpointing = Checkpointing(
            run.checkpoints, ck.every_epochs, ck.every_steps, ck.keep_last, ck.keep_best,
            ck.monitor, ck.mode, ck.on_exception, writer=writer,
            # the run's config and data as JSON text, encoded once: each object a checkpoint
            # pickles is a call back into Python, every epoch (packed_tensors says more)
            extra={"config": json.dumps(cfg.model_dump(mode="json")), "data_info": json.dumps(self.data_info),
                   "ray_version": RAY_VERSION, "batch_order": BATCH_ORDER},
        )
        self.control = (control or RunControl(run.path)) if writer else None
        self.events = EventLog(run.path, sinks) if writer else None
        extra = [reporter(self.checkpointing)] if reporter else []  # runs right after each save
        features = self._callbacks(extra, signals)
        self.loop = EpochLoop(self.backend, features + list(callbacks or []), cfg.trainer.epochs)
        preflight.check(self)  # what would fail in the first epoch fails now, before any write

    def _callbacks(self, extra: list[Callback], signals: bool) -> list[Callback]:
        """The loop's features in the order they must run at each event."""
        cfg, backend = self.cfg, self.backend
        positions = total_positions(
            cfg.schedule.interval, cfg.trainer.epochs, backend.batches_per_epoch, cfg.trainer.accumulate
        )
        schedules = [build_schedule(cfg.schedule, lr, positions) for lr in backend.base_learning_rates]
        callbacks: list[Callback] = []
        if signals and self.control is not None:
            callbacks.append(GracefulStop(self.control))
        callbacks += [LRScheduler(schedules, cfg.schedule.interval, cfg.trainer.accumulate), NanGuard()]
        es = cfg.early_stopping
        if es.enabled:
            callbacks.append(
                EarlyStopping(
                    es.monitor, es.mode, es.patience, es.min_delta, es.baseline,
                    es.start_from_epoch, es.restore_best,
                )
            )
        # History and MLflow log an epoch before its checkpoint: a kill between the two makes the
        # resumed run log that epoch again (same values) rather than never.
        if self.rank == 0:
            callbacks.append(HistoryLogger(self.run.path))
        if self.tracking is not None:
            callbacks.append(self.tracking)
        if self.rank == 0 and cfg.tracking.tensorboard:
            callbacks.append(TensorBoardLogger(self.run.path / "tensorboard"))
        callbacks += [self.checkpointing, *extra]
        if self.events is not None:
            callbacks.append(EventStream(self.events, cfg.name, self.checkpointing))
        # Last: a request seen at an epoch's end (a signal while its events were handled) stops the
        # run there, after that epoch's checkpoint, rather than a batch into the next epoch.
        callbacks.append(ControlRequests(self.control, backend.world_size))
        return callbacks

    def restore(self, path: Path) -> None:
        """Go on from a checkpoint; refuse one written by another Ray minor version."""
        payload = self.loop.load_checkpoint(path)
        if payload.get("batch_order", 1) != BATCH_ORDER:
            raise CheckpointError(
                f"{path}: written by an earlier rayfit that ordered each epoch's batches otherwise; it "
                "cannot resume exactly: train anew (rayfit train --new), or resume with that version"
            )
        saved_ray = str(payload.get("ray_version", ""))
        if saved_ray.split(".")[:2] != RAY_VERSION.split(".")[:2]:
            raise CheckpointError(
                f"{path}: written with Ray {saved_ray or 'unknown'}, this is Ray {RAY_VERSION}; "
                "resume with the same Ray minor version"
            )
        log.info("resumed %s from %s", self.cfg.name, path.name)

    def fit(self, checkpoint: Path | None = None, on_start: Callable[[Session], None] | None = None) -> FitResult:
        """The run sequence: restore from `checkpoint`, attach MLflow (the run's own MLflow run, found
        again by its folder), mark the folder running (rank 0), train, then finish, pause or cancel."""
        try:
            return self._fit(checkpoint, on_start)
        finally:
            if self.tracking is not None:
                self.tracking.close()

    def _fit(self, checkpoint: Path | None, on_start: Callable[[Session], None] | None) -> FitResult:
        if checkpoint is not None:
            self.restore(checkpoint)  # a corrupt file fails here, before anything is written
        run_id = None
        if self.tracking is not None:
            run_id = self.tracking.open(self.cfg, self.run.path)
        if self.rank == 0:
            self.run.start(self.cfg, rewrite_config=self.extend, mlflow_run_id=run_id, ray_version=RAY_VERSION)
        if on_start is not None:
            on_start(self)
        state = self.train()
        result = self.conclude(state)
        result.mlflow_run_id = run_id
        if self.events is not None:
            self.events.emit("end", status=result.status, stop_reason=result.stop_reason,
                             test_metrics=result.test_metrics)
        return result

    def train(self) -> LoopState:
        """Run the loop; a failed run (NaN) is recorded in run.json before the error goes up."""
        try:
            return self.loop.train()
        except TrainingFailed as exc:
            if self.rank == 0:
                self.run.update(self.run.status() | {"status": "failed", "stop_reason": str(exc)})
                if self.events is not None:
                    self.events.emit("end", status="failed", stop_reason=str(exc), test_metrics={})
            raise

    def conclude(self, state: LoopState) -> FitResult:
        """A paused or cancelled run is marked so in run.json (checkpoints kept); else finish it."""
        if not (state.interrupted or state.cancelled):
            return self.finish(state)
        result = FitResult(self.run.path, state.history, state.stop_reason,
                           interrupted=state.interrupted, cancelled=state.cancelled)
        if self.rank == 0:
            self.run.update(self.run.status() | {"status": result.status, "stop_reason": state.stop_reason})
        return result

    def finish(self, state: LoopState) -> FitResult:
        """Test metrics (every rank takes part), then on rank 0 the export, plot and MLflow close."""
        result = FitResult(self.run.path, state.history, state.stop_reason)
        result.test_metrics = self.loop.evaluate()
        if self.rank != 0:
            return result
        result.model_dir = self._export()
        result.test_metrics |= final_test_metrics(self.cfg, self.data, result.model_dir)  # scikit-learn's, of the export
        plot = self.run.path / "plots" / "curves.png"
        if self.tracking is not None:  # the tracking process draws it: matplotlib is imported there
            self._close_tracking(state.history, plot, result.test_metrics)
        else:
            from rayfit.plots import plot_history  # here only: matplotlib takes 1.2 s to import

            plot_history(state.history, plot)
        self.run.finish(stop_reason=state.stop_reason, test_metrics=result.test_metrics)
        return result

    def _export(self) -> Path:
        """The final model (best weights when early stopping restored them) with what predict needs."""
        folder = self.run.model_dir
        self.backend.export(folder)
        write_atomic(folder / "config.yaml", yaml.safe_dump(portable(self.cfg, self.run.path), sort_keys=False))
        write_atomic(folder / "data_info.json", json.dumps(self.data_info))
        return folder

    def _close_tracking(self, history: list[dict[str, float]], plot: Path, test_metrics: dict[str, float]) -> None:
        """Draw the curves' plot, log the model (a pyfunc that takes raw rows), test metrics, config,
        history, plot and the best and last checkpoints, then close the MLflow run."""
        tracking, run = self.tracking, self.run
        assert tracking is not None
        files = [(run.config_file, "config"), (run.path / "history.csv", "history"), (plot, "plots")]
        index = self.checkpointing.index
        best = index.best(1, self.checkpointing.mode)
        if best:
            files.append((run.checkpoints / best[0].file, "checkpoints/best"))
        if index.latest is not None:
            files.append((index.latest, "checkpoints/last"))
        tracking.finish(history, plot, test_metrics, run.model_dir, files)


def result_from_folder(run: RunFolder) -> FitResult:
    """A FitResult read back from what rank 0 wrote (the driver's view of a Ray Train run)."""
    status = run.status()
    history = run.history()
    if status.get("status") == "failed":
        raise TrainingFailed(status.get("stop_reason"))
    return FitResult(
        run.path, history, status.get("stop_reason"), status.get("test_metrics") or {},
        run.model_dir if exported_model(run.model_dir) else None, status.get("mlflow_run_id"),
        interrupted=status.get("status") == "paused", cancelled=status.get("status") == "cancelled",
    )
