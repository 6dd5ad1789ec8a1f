"""Freeing the workers of a trial's Ray Train runs that are over: a real local Ray, groups made
by a real actor standing for the Train controller (a group it makes is the job's: it outlives it)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rayfit.tuning.placement import NOTES_DIR, FreeStoppedTrials, write_note


def controller_with_group(run_dir: Path) -> tuple[Any, str]:
    """An actor that made a placement group, noted in `run_dir` as a trial's workers note theirs."""
    import ray
    from ray.util.placement_group import placement_group

    @ray.remote(num_cpus=0)
    class Controller:
        def make_group(self) -> str:
            group = placement_group([{"CPU": 0.1}])
            ray.get(group.ready())
            return group.id.hex()

    controller = Controller.remote()
    group_id = ray.get(controller.make_group.remote())
    run_dir.mkdir(parents=True, exist_ok=True)
    write_note(run_dir, group_id, controller._actor_id.hex())
    return controller, group_id


def state(group_id: str) -> str:
    import ray

    return ray.util.placement_group_table()[group_id]["state"]


@pytest.mark.slow
def test_a_group_is_removed_once_its_controller_is_dead_whatever_tune_says(ray_cluster, tmp_path):
    import ray

    trials = tmp_path / "trials"
    # a trial Tune shows RUNNING: PBT paused and restarted it within one step, so its first run's
    # controller is dead (the CI failure) while its second runs
    over, over_group = controller_with_group(trials / "t1")
    running, running_group = controller_with_group(trials / "t1")
    (trials / "t1" / NOTES_DIR / "half-written.json").write_text('{"id": "')
    freeing = FreeStoppedTrials(trials)
    shown = [SimpleNamespace(trial_id="t1", status="RUNNING")]
    ray.kill(over)
    deadline = time.monotonic() + 30  # the GCS marks a killed actor dead soon after
    while state(over_group) != "REMOVED":
        assert time.monotonic() < deadline, state(over_group)
        freeing.on_step_end(0, shown)
        time.sleep(0.1)
    assert not (trials / "t1" / NOTES_DIR / f"{over_group}.json").exists()
    assert state(running_group) == "CREATED"  # its controller lives: it may still use it
    ray.kill(running)
    freeing.on_experiment_end(shown)  # the sweep's end waits for the last controllers
    assert state(running_group) == "REMOVED"
    assert sorted(p.name for p in (trials / "t1" / NOTES_DIR).iterdir()) == ["half-written.json"]


def test_a_resumed_sweep_scans_at_once(tmp_path):
    import pickle

    freeing = FreeStoppedTrials(tmp_path)
    freeing._next_scan = 1e12  # a clock reading of the process that was killed
    assert pickle.loads(pickle.dumps(freeing))._next_scan == 0.0
