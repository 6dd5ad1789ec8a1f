"""MLflow tracking as a loop callback: each epoch's metrics go to the tracking process, which writes
them (and everything else of the MLflow run) while the loop goes on."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

from rayfit.config import ExperimentConfig
from rayfit.errors import first_line
from rayfit.interrupts import from_ctrl_c
from rayfit.loop import Callback, EpochLoop
from rayfit.tracking_process import TrackingProcess

log = logging.getLogger("rayfit")


class MlflowTracking(Callback):
    """Rank 0's MLflow run, written by a process of its own (started at once: it imports MLflow
    while this process imports the framework and loads the data).

    Epochs are handed to the tracking process by a thread of this callback, in order: the loop
    does not wait for the call's round trip (0.7 ms an epoch), unless `wait_for_epochs` asks that
    each epoch be in the store before the loop goes on. An epoch's error is raised at the next
    epoch's end (the run stops there, as it did when the loop waited); at the run's end it is a
    warning."""

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

    def _settle(self) -> None:
        """Wait for every epoch handed over; one that MLflow did not take is a warning here, at the
        run's end: the run's own outputs (checkpoints, model) are complete, and come first."""
        wait(self._sent)  # all of them, not only up to the first error: the calls after come after these
        try:
            self._check(wait=True)
        except Exception as error:
            log.warning("MLflow: an epoch's metrics were not recorded: %s", error)
        finally:
            self._sent.clear()

    def finish(self, history: list[dict[str, float]], plot: Path, test_metrics: dict[str, float], model_dir: Path,
               files: list[tuple[Path, str]]) -> None:
        """Draw the history's plot, log the model, test metrics and files and close the MLflow run
        (Session.fit ends the process)."""
        self._settle()
        self.recorder.finish(history, str(plot), test_metrics, str(model_dir), [(str(p), folder) for p, folder in files])

    def on_train_end(self, loop: EpochLoop) -> None:
        state = loop.state
        if state.interrupted or state.failed or state.cancelled:  # a paused run is RUNNING again on resume
            self._end("FAILED" if state.failed else "KILLED")

    def on_exception(self, loop: EpochLoop, exc: BaseException) -> None:
        self._end("KILLED" if from_ctrl_c(exc) else "FAILED")

    def _end(self, status: str) -> None:
        """Close the MLflow run of a run that stops otherwise than finished. MLflow's errors are
        warnings here: the pause's checkpoint (written after this) or the run's own error comes first."""
        if not self.run_id:
            return
        self._settle()
        try:
            self.recorder.end(status)
        except Exception as error:
            if not threading.main_thread().is_alive():
                return  # the process is exiting and took its tracking process along (Ray ends a trial's so)
            log.warning("MLflow: the run was not closed: %s", first_line(error))

    def close(self, timeout_s: float = 30.0) -> None:
        """End the tracking process (a second time does nothing), once the epochs handed over were
        sent, or after `timeout_s`: a tracking server that does not answer does not hold the run."""
        wait(self._sent, timeout=timeout_s)
        self.process.close()  # a call still waiting on the process gets an error now, and ends
        self._sender.shutdown(wait=True, cancel_futures=True)
