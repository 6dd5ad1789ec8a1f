"""Trainer: the Python API. Builds data, backend and callbacks from a config, runs the loop in
this process, resumes from the run folder, exports the model and closes the MLflow run."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import yaml

from rayfit.backends.torch_backend import TorchBackend
from rayfit.callbacks.checkpoint import CheckpointIndex, Checkpointing
from rayfit.callbacks.early_stopping import EarlyStopping
from rayfit.callbacks.epoch_hook import EpochFn, EpochHook
from rayfit.callbacks.history_logger import HistoryLogger
from rayfit.callbacks.lr_schedule import LRScheduler, total_positions
from rayfit.callbacks.mlflow_tracking import MlflowTracking, open_mlflow_run, tracking_uri
from rayfit.callbacks.nan_guard import NanGuard
from rayfit.callbacks.progress import ProgressBar
from rayfit.callbacks.signals import GracefulStop
from rayfit.config import ExperimentConfig, load_experiment
from rayfit.data import load_dataset
from rayfit.errors import CheckpointError, ConfigError
from rayfit.loop import Callback, EpochLoop, TrainingFailed
from rayfit.plots import plot_history
from rayfit.run_folder import RunFolder, write_atomic
from rayfit.schedules import Schedule, build_schedule

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
    interrupted: bool = False


class Trainer:
    """`Trainer(config).fit()` trains one experiment; re-running it resumes an unfinished run."""

    def __init__(
        self,
        config: ExperimentConfig | str | Path,
        overrides: list[str] | None = None,
        resume: bool = False,
    ) -> None:
        if isinstance(config, ExperimentConfig):
            self.config = config
        else:
            self.config = load_experiment(config, overrides)
        self.resume = resume
        self._epoch_functions: list[EpochFn] = []

    def register_progress_callback(self, fn: EpochFn) -> None:
        """Call `fn(epoch, metrics)` after each epoch, with plain float metrics."""
        self._epoch_functions.append(fn)

    def fit(self) -> FitResult:
        cfg = self.config
        if cfg.scaling.num_workers > 1:
            raise ConfigError(
                f"scaling.num_workers: {cfg.scaling.num_workers} workers need Ray Train, which is not "
                "wired in yet; use 1 (training runs in this process)"
            )
        run = RunFolder.for_config(cfg)
        run.check_resumable(cfg)
        latest = CheckpointIndex(run.checkpoints).latest
        if self.resume and latest is None:
            raise CheckpointError(f"{run.path}: --resume was given but there is no checkpoint to resume")
        data = load_dataset(cfg.data, cfg.trainer.seed)
        if cfg.trainer.batch_size > len(data.x_train):
            raise ConfigError(
                f"trainer.batch_size: {cfg.trainer.batch_size} is larger than the "
                f"{len(data.x_train)} training rows"
            )
        backend = TorchBackend(cfg, data)
        data_info = data.info.to_dict()
        checkpointing = self._checkpointing(run, data_info)
        schedules = self._schedules(backend)
        tracking = MlflowTracking(tracking_uri(cfg)) if cfg.tracking.enabled else None
        callbacks = self._callbacks(schedules, checkpointing, tracking)
        loop = EpochLoop(backend, callbacks, cfg.trainer.epochs)
        if latest is not None:
            payload = loop.load_checkpoint(latest)  # a corrupt file fails here, before any write
            saved_ray = str(payload.get("ray_version", ""))
            if saved_ray.split(".")[:2] != RAY_VERSION.split(".")[:2]:
                raise CheckpointError(
                    f"{latest}: written with Ray {saved_ray or 'unknown'}, this is Ray {RAY_VERSION}; "
                    "resume with the same Ray minor version"
                )
            log.info("resumed %s from %s", cfg.name, latest.name)
        run_id = None
        if tracking is not None:
            run_id = open_mlflow_run(cfg, run.path)
            tracking.attach(run_id)
        run.start(cfg, mlflow_run_id=run_id, ray_version=RAY_VERSION)

        try:
            state = loop.train()
        except TrainingFailed as exc:
            run.update(run.status() | {"status": "failed", "stop_reason": str(exc)})
            raise
        result = FitResult(run.path, state.history, state.stop_reason, mlflow_run_id=run_id)
        if state.interrupted:
            result.interrupted = True
            return result
        result.test_metrics = loop.evaluate()
        result.model_dir = self._export(backend, run, data_info)
        plot = plot_history(state.history, run.path / "plots" / "curves.png")
        if tracking is not None:
            self._close_tracking(tracking, backend, run, checkpointing, plot, result.test_metrics)
        run.finish(stop_reason=state.stop_reason, test_metrics=result.test_metrics)
        return result

    def _close_tracking(
        self,
        tracking: MlflowTracking,
        backend: TorchBackend,
        run: RunFolder,
        checkpointing: Checkpointing,
        plot: Path,
        test_metrics: dict[str, float],
    ) -> None:
        """Log the model (pytorch flavor), test metrics, config, history, plot and the best and
        last checkpoints, then close the MLflow run."""
        mlflow.set_tracking_uri(tracking.uri)  # log_model has only the fluent API
        with mlflow.start_run(run_id=tracking.run_id):
            backend.log_mlflow_model("model")
        files = [(run.config_file, "config"), (run.path / "history.csv", "history"), (plot, "plots")]
        index = checkpointing.index
        best = index.best(1, checkpointing.mode)
        if best:
            files.append((run.checkpoints / best[0].file, "checkpoints/best"))
        if index.latest is not None:
            files.append((index.latest, "checkpoints/last"))
        tracking.finish(test_metrics, files)

    def _checkpointing(self, run: RunFolder, data_info: dict[str, Any]) -> Checkpointing:
        ck = self.config.checkpoint
        extra = {
            "config": self.config.model_dump(mode="json"),
            "data_info": data_info,
            "ray_version": RAY_VERSION,
        }
        return Checkpointing(
            run.checkpoints, ck.every_epochs, ck.every_steps, ck.keep_last, ck.keep_best,
            ck.monitor, ck.mode, ck.on_exception, extra=extra,
        )

    def _schedules(self, backend: TorchBackend) -> list[Schedule]:
        """One LR schedule per optimizer parameter group; a ConfigError names a bad schedule."""
        cfg = self.config
        positions = total_positions(
            cfg.schedule.interval, cfg.trainer.epochs, backend.batches_per_epoch, cfg.trainer.accumulate
        )
        return [build_schedule(cfg.schedule, lr, positions) for lr in backend.base_learning_rates]

    def _callbacks(
        self, schedules: list[Schedule], checkpointing: Checkpointing, tracking: MlflowTracking | None
    ) -> list[Callback]:
        """The loop's features in the order they must run at each event."""
        cfg = self.config
        callbacks: list[Callback] = [
            GracefulStop(),
            LRScheduler(schedules, cfg.schedule.interval, cfg.trainer.accumulate),
            NanGuard(),
        ]
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
        callbacks += [
            HistoryLogger(checkpointing.folder.parent),
            *([tracking] if tracking else []),
            checkpointing,
            ProgressBar(cfg.trainer.progress),
            EpochHook(self._epoch_functions),
        ]
        return callbacks

    def _export(self, backend: TorchBackend, run: RunFolder, data_info: dict[str, Any]) -> Path:
        """The final model (best weights when early stopping restored them) with what predict needs."""
        backend.export(run.model_dir)
        config_text = yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False)
        write_atomic(run.model_dir / "config.yaml", config_text)
        write_atomic(run.model_dir / "data_info.json", json.dumps(data_info))
        return run.model_dir
