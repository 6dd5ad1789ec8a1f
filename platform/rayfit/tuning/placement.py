"""Freeing the Ray Train workers of a trial's runs that are over. Tune ends a trial it stops or
pauses by ending the trial's process; the placement group of a Ray Train run that process started
is owned by the job, not by the run's controller, so it outlives them and holds its CPUs, and later
trials wait forever (ray-project/ray#54305; Ray 2.60's own cleaner needs the dashboard's state API).
The workers note each group and the Train controller that made it in the trial's run folder; the
sweep's driver removes a noted group once its controller is dead."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import ray
from ray.tune import Callback as TuneCallback
from ray.util.placement_group import PlacementGroup, remove_placement_group

from rayfit.atomic_file import write_atomic
from rayfit.loop import Callback, EpochLoop

log = logging.getLogger("rayfit")
NOTES_DIR = "placement_groups"  # in a trial's run folder: one note per Ray Train run it started
CONTROLLER_PATIENCE_S = 60.0  # how long the last trials' Train controllers may take to go
SCAN_EVERY_S = 0.5


class NotePlacementGroup(Callback):
    """In each Ray Train worker of a trial: rank 0 notes the group the workers run in and the Train
    controller that made it (a file per group: a trial restarted by PBT runs in several)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = str(run_dir)

    def on_train_begin(self, loop: EpochLoop) -> None:
        from ray.train.v2._internal.execution.context import get_train_context  # the controller's handle

        group = ray.util.get_current_placement_group()
        if group is not None and ray.train.get_context().get_world_rank() == 0:
            write_note(Path(self.run_dir), group.id.hex(), get_train_context().controller_actor._actor_id.hex())


def write_note(run_dir: Path, group_id: str, controller: str) -> None:
    """Note in `run_dir` a placement group (hex id) and the actor (hex id) whose death frees it."""
    notes = run_dir / NOTES_DIR
    notes.mkdir(exist_ok=True)
    note = json.dumps({"id": group_id, "controller": controller}).encode()
    write_atomic(notes / f"{group_id}.json", note, durable=False)


class FreeStoppedTrials(TuneCallback):
    """In the sweep's driver: remove every group a trial's workers noted once its controller is
    dead, whatever Tune's state of the trial. Watching Tune's states misses some: a synchronous PBT
    pause can begin and end within one of Tune's steps, and a trial restarted runs in a new group.
    A group removed while its controller lives would make it start its workers again in a new group
    that nothing frees, hence the wait; the sweep's end waits for the last controllers."""

    def __init__(self, trials_dir: Path) -> None:
        self.trials_dir = str(trials_dir)
        self._next_scan = 0.0

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the sweep's state; a monotonic clock's reading means
        # nothing to the process that resumes the sweep (after a reboot it would stop the scans).
        return {"trials_dir": self.trials_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(Path(state["trials_dir"]))

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if time.monotonic() < self._next_scan:
            return
        self._next_scan = time.monotonic() + SCAN_EVERY_S
        for trial in trials:
            free_dead(Path(self.trials_dir) / trial.trial_id)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        folders = [Path(self.trials_dir) / trial.trial_id for trial in trials]
        deadline = time.monotonic() + CONTROLLER_PATIENCE_S
        while sum(free_dead(folder) for folder in folders) and time.monotonic() < deadline:
            time.sleep(0.2)
        for folder in folders:  # every trial has ended: a controller still alive is stuck
            free_dead(folder, even_alive=True)


def free_dead(run_dir: Path, even_alive: bool = False) -> int:
    """Remove the groups noted in `run_dir` whose controller is dead (or all, `even_alive`) and
    drop their notes; the number of notes left."""
    left = 0
    for path in sorted((run_dir / NOTES_DIR).glob("*.json")):
        try:
            noted = json.loads(path.read_text())
            group = PlacementGroup(ray.PlacementGroupID(bytes.fromhex(noted["id"])))
            controller = str(noted["controller"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a note of ours: left alone, and not waited for
        if alive(controller) and not even_alive:
            left += 1
            continue
        if ray.util.placement_group_table(group).get("state") not in (None, "REMOVED"):
            remove_placement_group(group)
            log.info("freed the workers of a run of trial %s that is over", run_dir.name)
        path.unlink(missing_ok=True)
    return left


def alive(actor_id: str) -> bool:
    """Whether an actor is not dead yet, from the GCS (Ray's state API needs the dashboard)."""
    from ray._private.state import actors

    return actors(actor_id=actor_id).get("State", "DEAD") != "DEAD"
