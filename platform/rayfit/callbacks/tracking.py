"""MLflow tracking as a loop callback: each epoch's metrics go to the tracking process, which writes
them (and everything else of the MLflow run) while the loop goes on."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rayfit.config import ExperimentConfig
from rayfit.loop import Callback, EpochLoop
from rayfit.tracking_process import TrackingProcess

log = logging.getLogger("rayfit")


class MlflowTracking(Callback):
    """Rank 0's MLflow run, written by a process of its own (started at once: it imports MLflow
    while this process imports the framework and loads the data).

    Epochs are handed to the tracking process by a thread of this callback, in order: the loop
    does not wait for the call's round trip (0.7 ms an epoch), unless `wait_for_epochs` asks that
    each epoch be in the store before the loop goes on. An epoch's error is raised at the next
    epoch's end, or when the run is closed."""

    def __init__(self, uri: str, system_metrics_s: float = 0.0, wait_for_epochs: bool = False) -> None:
        self.run_id, self.wait_for_epochs = "", wait_for_epochs
        self.process = TrackingProcess(uri, system_metrics_s)
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rayfit-mlflow-send")
        self._sent: list[Future[None]] = []  # epochs handed over, not yet checked for an error

    def open(self, cfg: ExperimentConfig, run_dir: Path) -> str:
        """The id of the run folder's MLflow run: the existing one on resume, else a new one."""
        self.recorder = self.process.recorder()
        self.run_id = self.recorder.open(cfg.model_dump(mode="json"), str(run_dir))
        return self.run_id

    def on_train_begin(self, loop: EpochLoop) -> None:
        self.recorder.start(loop.state.history)  # a resumed run's history: MLflow may lack its last epochs

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        self._check(wait=False)
        self._sent.append(self._sender.submit(self.recorder.log_epoch, dict(metrics), loop.state.epoch,
                                              self.wait_for_epochs))
        if self.wait_for_epochs:
            self._check(wait=True)

    def _check(self, wait: bool) -> None:
        """Raise the first error of the epochs handed over; with `wait`, once all were sent."""
        while self._sent and (wait or self._sent[0].done()):
            self._sent.pop(0).result()

    def _call(self, method: str, *args: Any) -> None:
        """A recorder call after every epoch handed over (and their errors first)."""
        self._check(wait=True)
        getattr(self.recorder, method)(*args)

    def finish(self, history: list[dict[str, float]], plot: Path, test_metrics: dict[str, float], model_dir: Path,
               files: list[tuple[Path, str]]) -> None:
        """Draw the history's plot, log the model, test metrics and files and close the MLflow run
        (Session.fit ends the process)."""
        self._call("finish", history, str(plot), test_metrics, str(model_dir), [(str(p), folder) for p, folder in files])

    def on_train_end(self, loop: EpochLoop) -> None:
        state = loop.state
        if state.interrupted or state.failed or state.cancelled:  # a paused run is RUNNING again on resume
            self._end("FAILED" if state.failed else "KILLED")

    def on_exception(self, loop: EpochLoop, exc: BaseException) -> None:
        try:
            self._end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        except Exception as error:  # the run's own exception matters more, and the checkpoint after this
            log.warning("MLflow: could not close the run: %s", error)

    def _end(self, status: str) -> None:
        """Close the MLflow run; the process stays until Session.fit ends (a pause's checkpoint,
        written after this, still waits for the epoch metrics)."""
        if self.run_id:
            self._call("end", status)

    def close(self) -> None:
        """End the tracking process (a second time does nothing); epochs handed over are sent first."""
        self._sender.shutdown(wait=True)
        self.process.close()
