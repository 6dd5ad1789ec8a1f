"""MLflow: one run per training run, found again by its run folder, so a resume keeps logging there.

The driver opens (or finds) the run and passes its id; the callback logs with that id only, so it
works the same in a Ray worker as in-process.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException

from rayfit.config import ExperimentConfig
from rayfit.errors import ConfigError
from rayfit.loop import Callback, EpochLoop

log = logging.getLogger("rayfit")
RUN_DIR_TAG = "rayfit.run_dir"
DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(cfg: ExperimentConfig) -> str:
    return cfg.tracking.uri or DEFAULT_URI


def open_mlflow_run(cfg: ExperimentConfig, run_dir: Path) -> str:
    """The id of the MLflow run for `run_dir`: the existing one on resume, else a new one with the
    flattened config as params."""
    try:
        client = MlflowClient(tracking_uri(cfg))
    except UnsupportedModelRegistryStoreURIException as exc:  # what MLflow raises for unknown schemes
        raise ConfigError(
            f"tracking.uri: MLflow does not support {tracking_uri(cfg)!r}; expected for example "
            "sqlite:///mlflow.db, a folder or http://HOST:PORT"
        ) from exc
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment(cfg.tracking.experiment)
    )
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{run_dir}'", max_results=1
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=cfg.name, tags={RUN_DIR_TAG: str(run_dir)})
    params = {k: str(v)[:6000] for k, v in cfg.flat().items()}
    items = list(params.items())
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, v) for k, v in items[i : i + 100]])
    return run.info.run_id


def metric_list(metrics: dict[str, float], step: int) -> list[mlflow.entities.Metric]:
    now = int(time.time() * 1000)
    return [mlflow.entities.Metric(k, v, now, step) for k, v in metrics.items() if k != "epoch"]


class MlflowTracking(Callback):
    """Log each epoch's metrics (step = epoch) asynchronously, so the epoch does not wait on the store."""

    def __init__(self, uri: str) -> None:
        self.uri, self.run_id = uri, ""

    def attach(self, run_id: str) -> None:
        """Log into `run_id` (opened by the driver). Creating a client opens the store, which is
        why this waits until every input has been checked."""
        self.run_id, self.client = run_id, MlflowClient(self.uri)

    def on_train_begin(self, loop: EpochLoop) -> None:
        self.client.update_run(self.run_id, status="RUNNING")

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        values = metric_list(metrics, step=loop.state.epoch)
        self.client.log_batch(self.run_id, metrics=values, synchronous=False)

    def finish(
        self, test_metrics: dict[str, float], files: list[tuple[Path, str]], status: str = "FINISHED") -> None:
        """Log the test metrics and artifacts, wait for pending async writes, and close the run."""
        if test_metrics:
            self.client.log_batch(self.run_id, metrics=metric_list(test_metrics, step=0))
        for path, folder in files:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path), artifact_path=folder)
        self.flush()
        self.client.set_terminated(self.run_id, status=status)

    def flush(self) -> None:
        mlflow.flush_async_logging()

    def on_train_end(self, loop: EpochLoop) -> None:
        if loop.state.interrupted or loop.state.failed:  # a paused run is RUNNING again on resume
            self.flush()
            self.client.set_terminated(self.run_id, status="FAILED" if loop.state.failed else "KILLED")

    def on_exception(self, loop: EpochLoop, exc: BaseException) -> None:
        self.flush()
        killed = isinstance(exc, KeyboardInterrupt)
        self.client.set_terminated(self.run_id, status="KILLED" if killed else "FAILED")
