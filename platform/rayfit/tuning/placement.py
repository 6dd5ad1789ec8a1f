"""Freeing a stopped or paused trial's Ray Train workers. Tune ends a trial it stops or pauses by
ending the trial's process; the placement group of the Ray Train run that process started can
outlive it and hold its CPUs, so later trials wait forever (ray-project/ray#54305; Ray 2.60's own
cleaner needs the dashboard's state API). The workers note their group and their Train controller
in the trial's run folder; the sweep's driver removes the group once that controller is gone."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray.tune import Callback as TuneCallback
from ray.util.placement_group import PlacementGroup, remove_placement_group

from rayfit.loop import Callback, EpochLoop

log = logging.getLogger("rayfit")
NOTE_FILE = "placement_group.json"
CONTROLLER_PATIENCE_S = 60.0  # how long a stopped trial's Train controller may take to go


class NotePlacementGroup(Callback):
    """In each Ray Train worker of a trial: rank 0 writes the ids of the group the workers run in
    and of the Train controller that made it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = str(run_dir)

    def on_train_begin(self, loop: EpochLoop) -> None:
        from ray.train.v2._internal.execution.context import get_train_context  # the controller's handle

        group = ray.util.get_current_placement_group()
        if group is not None and ray.train.get_context().get_world_rank() == 0:
            controller = get_train_context().controller_actor._actor_id.hex()
            (Path(self.run_dir) / NOTE_FILE).write_text(json.dumps({"id": group.id.hex(), "controller": controller}))


class FreeStoppedTrials(TuneCallback):
    """In the sweep's driver: when a trial ends (finished, stopped or failed) or is paused (PBT),
    remove the placement group its workers noted, once their controller is gone. Tune calls this
    before it stops the trial's process: a group removed while the controller lives makes it start
    its workers again in a new group that nothing frees. So each trial is freed on a thread of its
    own, and the sweep's end waits for them."""

    def __init__(self, trials_dir: Path) -> None:
        self.trials_dir = str(trials_dir)
        self._freeing: list[threading.Thread] = []
        self._paused: set[tuple[str, str]] = set()  # (trial, controller) whose pause is being freed

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks into the sweep's state
        return {"trials_dir": self.trials_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.trials_dir, self._freeing, self._paused = state["trials_dir"], [], set()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        run_dir = Path(self.trials_dir) / trial.trial_id
        self._free_later(run_dir, read_note(run_dir), True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.on_trial_complete(iteration, trials, trial)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """A paused trial's workers (Tune has no pause callback): the note is read now, before the
        trial runs again and its new workers note their own group."""
        for trial in trials:
            if trial.status != "PAUSED":
                continue
            run_dir = Path(self.trials_dir) / trial.trial_id
            noted = read_note(run_dir)
            if noted is not None and (trial.trial_id, noted[1]) not in self._paused:
                self._paused.add((trial.trial_id, noted[1]))
                self._free_later(run_dir, noted, False)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for thread in self._freeing:
            thread.join()

    def _free_later(self, run_dir: Path, noted: tuple[bytes, str] | None, ended: bool) -> None:
        if noted is None:
            return  # no workers, or they never started
        thread = threading.Thread(target=free, args=(run_dir, noted, ended), daemon=True)
        thread.start()
        self._freeing.append(thread)


def read_note(run_dir: Path) -> tuple[bytes, str] | None:
    """The placement group and Train controller a trial's workers noted, if any."""
    try:
        noted = json.loads((run_dir / NOTE_FILE).read_text())
        return bytes.fromhex(noted["id"]), str(noted["controller"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def free(run_dir: Path, noted: tuple[bytes, str], ended: bool, patience_s: float = CONTROLLER_PATIENCE_S) -> None:
    """Remove the noted group once its Train controller is dead; after patience_s, a trial that
    ended is freed anyway, a paused one is left (its controller may be running it again)."""
    group_id, controller = noted
    deadline = time.monotonic() + patience_s
    while alive(controller) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not ended and alive(controller):
        log.warning("the workers of paused trial %s did not stop within %.0f s; left running", run_dir.name, patience_s)
        return
    group = PlacementGroup(ray.PlacementGroupID(group_id))
    if ray.util.placement_group_table(group).get("state") not in (None, "REMOVED"):
        remove_placement_group(group)
        log.info("freed the workers of %s trial %s", "stopped" if ended else "paused", run_dir.name)
    if read_note(run_dir) == noted:  # a run started since has noted its own group: keep that note
        (run_dir / NOTE_FILE).unlink(missing_ok=True)


def alive(actor_id: str) -> bool:
    """Whether an actor is not dead yet, from the GCS (Ray's state API needs the dashboard)."""
    from ray._private.state import actors

    return actors(actor_id=actor_id).get("State", "DEAD") != "DEAD"
