"""Freeing a stopped trial's Ray Train workers. Tune ends a trial it stops by ending the trial's
process; the placement group of the Ray Train run that process started can outlive it and hold
its CPUs, so later trials wait forever (ray-project/ray#54305; Ray 2.60's own cleaner needs the
dashboard's state API). The workers note their group and their Train controller in the trial's run
folder; the sweep's driver removes the group once that controller is gone."""

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
    """In the sweep's driver: when a trial ends (finished, stopped or failed), remove the placement
    group its workers noted, once their controller is gone. Tune calls this before it stops the
    trial's process: a group removed while the controller lives makes it start its workers again
    in a new group that nothing frees. So each trial is freed on a thread of its own, and the
    sweep's end waits for them."""

    def __init__(self, trials_dir: Path) -> None:
        self.trials_dir = str(trials_dir)
        self._freeing: list[threading.Thread] = []

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks into the sweep's state
        return {"trials_dir": self.trials_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.trials_dir, self._freeing = state["trials_dir"], []

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._free_later(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._free_later(trial.trial_id)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for thread in self._freeing:
            thread.join()

    def _free_later(self, trial_id: str) -> None:
        thread = threading.Thread(target=free, args=(Path(self.trials_dir) / trial_id,), daemon=True)
        thread.start()
        self._freeing.append(thread)


def free(run_dir: Path, patience_s: float = CONTROLLER_PATIENCE_S) -> None:
    """Remove the group noted in run_dir once its Train controller is dead (or after patience_s)."""
    note = run_dir / NOTE_FILE
    try:
        noted = json.loads(note.read_text())
        group_id, controller = bytes.fromhex(noted["id"]), str(noted["controller"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # no workers, or they never started
    deadline = time.monotonic() + patience_s
    while alive(controller) and time.monotonic() < deadline:
        time.sleep(0.2)
    group = PlacementGroup(ray.PlacementGroupID(group_id))
    if ray.util.placement_group_table(group).get("state") not in (None, "REMOVED"):
        remove_placement_group(group)
        log.info("freed the workers of stopped trial %s", run_dir.name)
    note.unlink(missing_ok=True)


def alive(actor_id: str) -> bool:
    """Whether an actor is not dead yet, from the GCS (Ray's state API needs the dashboard)."""
    from ray._private.state import actors

    return actors(actor_id=actor_id).get("State", "DEAD") != "DEAD"
