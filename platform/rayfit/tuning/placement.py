"""Freeing a stopped trial's Ray Train workers. Tune ends a trial it stops by ending the trial's
process; the placement group of the Ray Train run that process started can outlive it and hold
its CPUs, so later trials wait forever (ray-project/ray#54305). The workers note their group in
the trial's run folder; the sweep's driver removes it once Tune is done with the trial."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import ray
from ray.tune import Callback as TuneCallback
from ray.util.placement_group import PlacementGroup, remove_placement_group

from rayfit.loop import Callback, EpochLoop

log = logging.getLogger("rayfit")
NOTE_FILE = "placement_group.json"


class NotePlacementGroup(Callback):
    """In each Ray Train worker of a trial: rank 0 writes the id of the group the workers run in."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = str(run_dir)

    def on_train_begin(self, loop: EpochLoop) -> None:
        group = ray.util.get_current_placement_group()
        if group is not None and ray.train.get_context().get_world_rank() == 0:
            (Path(self.run_dir) / NOTE_FILE).write_text(json.dumps({"id": group.id.hex()}))


class FreeStoppedTrials(TuneCallback):
    """In the sweep's driver: when a trial ends (finished, stopped or failed), remove the placement
    group its workers noted, if it is still there."""

    def __init__(self, trials_dir: Path) -> None:
        self.trials_dir = str(trials_dir)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        free(Path(self.trials_dir) / trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        free(Path(self.trials_dir) / trial.trial_id)


def free(run_dir: Path) -> None:
    note = run_dir / NOTE_FILE
    try:
        group_id = bytes.fromhex(json.loads(note.read_text())["id"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # no workers, or they never started
    group = PlacementGroup(ray.PlacementGroupID(group_id))
    if ray.util.placement_group_table(group).get("state") not in (None, "REMOVED"):
        remove_placement_group(group)
        log.info("freed the workers of stopped trial %s", run_dir.name)
    note.unlink(missing_ok=True)
