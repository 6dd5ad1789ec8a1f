"""One trial of a sweep: a rayfit run (its own folder under runs/SWEEP/trials/, so it checkpoints
and resumes like any run) whose epochs reach Tune through the run's event stream, in the trial's
process or, with workers, from a Ray Train run started by the trial."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.tune
from mlflow.tracking import MlflowClient

from rayfit.callbacks.checkpoint import NAME, CheckpointIndex, Entry
from rayfit.callbacks.mlflow_tracking import open_mlflow_run, tracking_uri
from rayfit.config import ExperimentConfig
from rayfit.control import RunControl
from rayfit.errors import CheckpointError
from rayfit.events import Event
from rayfit.run_folder import RunFinished, RunFolder
from rayfit.tuning.placement import NotePlacementGroup
from rayfit.tuning.space import trial_config

DONOR_FILE = "donor.json"  # in a Tune checkpoint: which trial's rayfit checkpoint this is
CLONES_FILE = "clones.json"  # in a trial's run folder: the donors it was cloned from (PBT)
PARENT_TAG = "mlflow.parentRunId"
SWEEP_TAG = "rayfit.sweep"
# How long Tune waits for a stopped trial's thread before it hands the process to the next trial
# (Ray's default is 2 s; the paused run closes its MLflow run first).
THREAD_TIMEOUT_S = "120"
ENDED = "ended by the sweep"  # the reason of the pause TuneReport asks when Tune ends a trial


@dataclass
class TrialSetup:
    """What every trial of a sweep shares: the experiment (a dump without tune:), where trial
    folders go, the parent MLflow run, and whether to hand checkpoints to Tune (PBT clones them)."""

    base: dict[str, Any]
    trials_dir: str
    parent_run_id: str | None
    share_checkpoints: bool


def run_trial(params: dict[str, Any], setup: TrialSetup) -> None:
    """The Tune function trainable: build the trial's config, adopt a PBT donor's checkpoint if
    Tune hands one, open its MLflow child run, train (resuming its folder if it has one)."""
    from rayfit.trainer import Trainer

    # read by Tune in this process when it reuses it for the next trial (reuse_actors)
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", THREAD_TIMEOUT_S)
    trial_id = ray.tune.get_context().get_trial_id()
    cfg = trial_config(setup.base, params, trial_id, setup.trials_dir)
    run = RunFolder.for_config(cfg)
    donated = ray.tune.get_checkpoint()
    if donated is not None:
        with donated.as_directory() as folder:
            adopt(Path(folder), run, cfg)
    if cfg.tracking.enabled and setup.parent_run_id:
        child_run(cfg, run.path, setup.parent_run_id)
    workers = cfg.scaling.resolved().distributed
    # with workers: they note their placement group, which the driver removes when Tune ends the trial
    notes = [NotePlacementGroup(run.path)] if workers else []
    trainer = Trainer(cfg, progress=False, callbacks=notes)
    if trainer.control.pending() == ("pause", ENDED):  # asked of an earlier start's workers, not this start's
        trainer.control.clear()
    report = TuneReport(run, setup.share_checkpoints, trainer.control, workers)
    trainer.register_event_callback(report)
    try:
        trainer.fit()
    except RunFinished:  # finished before the sweep's driver was killed: nothing left to train
        pass
    report.last_epoch_if_none()  # Tune may end the trial at this report too
    if report.ended is not None:
        trainer.control.clear()  # the run may have finished before it saw the pause
        raise report.ended  # Tune's end of the trial, now that the run has stopped


def child_run(cfg: ExperimentConfig, run_dir: Path, parent_run_id: str) -> str:
    """The trial's MLflow run (found again by its folder on resume: no duplicate), nested under
    the sweep's run. Session.fit finds the same run by the same tag."""
    run_id = open_mlflow_run(cfg, run_dir)
    client = MlflowClient(tracking_uri(cfg))
    client.set_tag(run_id, PARENT_TAG, parent_run_id)
    client.set_tag(run_id, SWEEP_TAG, str(run_dir.parent.parent.name))
    return run_id


class TuneReport:
    """An event sink: each epoch's metrics to `ray.tune.report` (`epoch` is the schedulers'
    time). With `share`, the epoch's rayfit checkpoint goes along as a Tune checkpoint (PBT).
    When Tune ends the trial (a scheduler stops it, PBT pauses it) the run is paused through
    `control`: it ends as a paused run (checkpoint, MLflow run and lock closed, Ray Train workers
    freed), and a process Tune reuses is free for the next trial."""

    def __init__(self, run: RunFolder, share: bool, control: RunControl, workers: bool) -> None:
        self.run, self.share, self.control, self.workers = run, share, control, workers
        self.reported = False
        self.ended: SystemExit | None = None

    def __call__(self, event: Event) -> None:
        if event["type"] != "epoch" or self.ended is not None:
            return
        self.reported = True
        metrics = {k: float(v) for k, v in event["metrics"].items()}
        name = event.get("checkpoint")
        match = NAME.fullmatch(name) if self.share and isinstance(name, str) else None
        if match is None or not self._written(self.run.checkpoints / name):
            self._report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:  # Tune copies it into the sweep's storage
            shutil.copy2(self.run.checkpoints / name, Path(folder) / name)
            donor = {"trial": self.run.path.name, "file": name, "epoch": int(match[1]), "step": int(match[2])}
            (Path(folder) / DONOR_FILE).write_text(json.dumps(donor))
            self._report(metrics, ray.tune.Checkpoint.from_directory(folder))

    def _report(self, metrics: dict[str, float], checkpoint: ray.tune.Checkpoint | None = None) -> None:
        try:
            ray.tune.report(metrics, checkpoint=checkpoint)
        except SystemExit as exc:
            # Tune's way to end a trial: `report` exits the thread that calls it: the loop's, or with
            # workers the event follower's, while their Ray Train run would go on. A pause ends either
            # in order; run_trial raises this again once the run has stopped.
            self.ended = exc
            self.control.request("pause", ENDED, persist=self.workers)  # workers read it from the run folder

    def last_epoch_if_none(self) -> None:
        """Report the run's last epoch again when this start of the trial trained none. A Ray Train
        run goes on while Tune pauses its trial (PBT), so it can reach its last epoch unseen; resumed,
        it has nothing left to train, and synchronous PBT, still waiting for that epoch, would hold
        the other trials paused for ever."""
        history = [] if self.reported else self.run.history()
        if not history:
            return
        latest = CheckpointIndex(self.run.checkpoints).entries
        name = latest[-1].file if latest and latest[-1].epoch == len(history) else None
        self({"type": "epoch", "metrics": history[-1], "checkpoint": name})

    @staticmethod
    def _written(path: Path, timeout_s: float = 60.0) -> bool:
        """Whether the epoch's checkpoint is on disk, waiting for the loop's background writer (the
        file appears whole: it is renamed into place)."""
        deadline = time.monotonic() + timeout_s
        while not path.is_file():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


def adopt(folder: Path, run: RunFolder, cfg: ExperimentConfig) -> None:
    """PBT's exploit: make the donor's rayfit checkpoint (weights, optimizer, schedule and loop
    state) this run's latest, with the trial's new config, so the run resumes from it. A
    checkpoint of this trial itself (a restart) is left to the run folder, which is as new."""
    try:
        donor = json.loads((folder / DONOR_FILE).read_text())
        name, epoch, step, trial = donor["file"], int(donor["epoch"]), int(donor["step"]), str(donor["trial"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{folder}: not a rayfit sweep checkpoint ({exc})") from exc
    if trial == run.path.name:
        return
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        raise CheckpointError(f"{folder / DONOR_FILE}: refused checkpoint name {name!r}")
    index = CheckpointIndex(run.checkpoints)
    for old in index.entries:
        (run.checkpoints / old.file).unlink(missing_ok=True)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    shutil.copy2(folder / name, run.checkpoints / name)
    index.entries = [Entry(name, epoch, step, None)]
    index.write()
    run.write_config(cfg)  # the resume check compares against the trial's new (mutated) config
    record_clone(run, folder / name, trial, epoch)


def record_clone(run: RunFolder, file: Path, donor: str, epoch: int) -> None:
    """Keep a copy of what was loaded and say where it came from (clones.json), for the record."""
    kept = run.path / "clones" / f"{donor}-{file.name}"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(file, kept)
    clones_file = run.path / CLONES_FILE
    clones = json.loads(clones_file.read_text()) if clones_file.is_file() else []
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    clones.append({"donor": donor, "epoch": epoch, "file": kept.name, "sha256": digest})
    clones_file.write_text(json.dumps(clones, indent=1))
