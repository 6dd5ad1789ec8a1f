"""MLflow tracking as a loop callback: each epoch's metrics go to the tracking process, which writes
them (and everything else of the MLflow run) while the loop goes on."""

from __future__ import annotations

from pathlib import Path

from rayfit.config import ExperimentConfig
from rayfit.loop import Callback, EpochLoop
from rayfit.tracking_process import TrackingProcess


class MlflowTracking(Callback):
    """Rank 0's MLflow run, written by a process of its own (started at once: it imports MLflow
    while this process imports the framework and loads the data)."""

    def __init__(self, uri: str, system_metrics_s: float = 0.0, wait_for_epochs: bool = False) -> None:
        self.run_id, self.wait_for_epochs = "", wait_for_epochs
        self.process = TrackingProcess(uri, system_metrics_s)

    def open(self, cfg: ExperimentConfig, run_dir: Path) -> str:
        """The id of the run folder's MLflow run: the existing one on resume, else a new one."""
        self.recorder = self.process.recorder()
        self.run_id = self.recorder.open(cfg.model_dump(mode="json"), str(run_dir))
        return self.run_id

    def on_train_begin(self, loop: EpochLoop) -> None:
        self.recorder.start(loop.state.history)  # a resumed run's history: MLflow may lack its last epochs

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        self.recorder.log_epoch(metrics, loop.state.epoch, self.wait_for_epochs)

    def finish(self, history: list[dict[str, float]], plot: Path, test_metrics: dict[str, float], model_dir: Path,
               files: list[tuple[Path, str]]) -> None:
        """Draw the history's plot, log the model, test metrics and files and close the MLflow run
        (Session.fit ends the process)."""
        self.recorder.finish(history, str(plot), test_metrics, str(model_dir), [(str(p), folder) for p, folder in files])

    def on_train_end(self, loop: EpochLoop) -> None:
        state = loop.state
        if state.interrupted or state.failed or state.cancelled:  # a paused run is RUNNING again on resume
            self._end("FAILED" if state.failed else "KILLED")

    def on_exception(self, loop: EpochLoop, exc: BaseException) -> None:
        self._end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")

    def _end(self, status: str) -> None:
        """Close the MLflow run; the process stays until Session.fit ends (a pause's checkpoint,
        written after this, still waits for the epoch metrics)."""
        if self.run_id:
            self.recorder.end(status)

    def close(self) -> None:
        """End the tracking process (a second time does nothing)."""
        self.process.close()
