"""Schedulers from the tune: section, and ASHA's rungs surviving a restore (no Ray cluster)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandScheduler, PopulationBasedTraining, TrialScheduler

from rayfit.config import validate
from rayfit.errors import CheckpointError, ConfigError
from rayfit.tuning.schedulers import STATE_FILE, RungKeepingASHA, build_scheduler


def sweep(scheduler, epochs=9):
    return validate({"name": "s", "data": {"source": "sklearn:digits"}, "trainer": {"epochs": epochs},
                     "tune": {"metric": "val_accuracy", "mode": "max", "scheduler": scheduler}})


def trial(trial_id: str) -> Trial:
    return Trial("rayfit_trial", trial_id=trial_id, stub=True, config={})


def result(epoch: int, accuracy: float) -> dict[str, float]:
    return {"epoch": float(epoch), "val_accuracy": accuracy}


def test_schedulers_act_on_our_epoch_up_to_trainer_epochs(tmp_path):
    asha = build_scheduler(sweep({"name": "asha", "grace_period": 1, "reduction_factor": 3}), tmp_path)
    assert isinstance(asha, RungKeepingASHA) and asha._time_attr == "epoch" and asha._max_t == 9
    assert [m for m, _ in asha._brackets[0]._rungs] == [9, 3, 1]
    assert isinstance(build_scheduler(sweep({"name": "hyperband"}), tmp_path), HyperBandScheduler)
    pbt = build_scheduler(sweep({"name": "pbt", "perturbation_interval": 2,
                                 "mutations": {"optimizer.lr": {"uniform": [0.1, 1]}}}), tmp_path)
    assert isinstance(pbt, PopulationBasedTraining) and pbt._perturbation_interval == 2
    with pytest.raises(ConfigError, match="grace_period 12 is more than the 9 epochs"):
        build_scheduler(sweep({"name": "asha", "grace_period": 12}), tmp_path)
    # 27 epochs, grace 1, factor 3: brackets start at 1, 3 and 9; a fourth would start at 27
    assert len(build_scheduler(sweep({"name": "asha", "brackets": 3}, epochs=27), tmp_path)._brackets) == 3
    with pytest.raises(ConfigError, match="brackets 4 is more than the 3 whose first rung"):
        build_scheduler(sweep({"name": "asha", "brackets": 4}, epochs=27), tmp_path)


def test_asha_rungs_come_back_after_tune_restores_the_scheduler_as_it_was_at_the_start(tmp_path):
    asha = build_scheduler(sweep({"name": "asha", "grace_period": 1}), tmp_path)
    asha.set_search_properties("val_accuracy", "max")
    started = pickle.dumps(asha)  # what Tune keeps in tuner.pkl
    good, bad = trial("good"), trial("bad")
    for t in (good, bad):
        asha.on_trial_add(None, t)
    assert asha.on_trial_result(None, good, result(1, 0.9)) == TrialScheduler.CONTINUE
    assert (tmp_path / STATE_FILE).is_file()
    restored = pickle.loads(started)
    late = trial("late")
    restored.on_trial_add(None, late)
    assert restored._brackets[0]._rungs[-1][1] == {"good": 0.9}
    # the good trial's result is known again, so a worse one stops at the first rung
    assert restored.on_trial_result(None, late, result(1, 0.1)) == TrialScheduler.STOP


def test_a_doctored_state_file_is_refused(tmp_path):
    (tmp_path / STATE_FILE).write_text('{"brackets": [[[9, {}], [3, {}], [2, {"x": 1}]]]}')
    asha = build_scheduler(sweep({"name": "asha"}), tmp_path)
    asha.set_search_properties("val_accuracy", "max")
    with pytest.raises(CheckpointError, match="not this sweep's ASHA state .*milestone 2"):
        asha.on_trial_add(None, trial("t"))


def test_asha_brackets_each_trial_stays_in_the_bracket_it_was_drawn_into_after_a_restore(tmp_path):
    asha = build_scheduler(sweep({"name": "asha", "grace_period": 1, "brackets": 3}, epochs=27), tmp_path)
    asha.set_search_properties("val_accuracy", "max")
    assert [[m for m, _ in b._rungs] for b in asha._brackets] == [[27, 9, 3, 1], [27, 9, 3], [27, 9]]
    started = pickle.dumps(asha)
    np.random.seed(0)  # Ray draws a trial's bracket from numpy's global generator
    trials = [trial(f"t{i}") for i in range(40)]
    for t in trials:
        asha.on_trial_add(None, t)
        asha.on_trial_result(None, t, result(1, 0.5))
    drawn = {t.trial_id: asha._brackets.index(asha._trial_info[t.trial_id]) for t in trials}
    assert set(drawn.values()) == {0, 1, 2}  # Ray's draw, 40 times
    restored = pickle.loads(started)
    for t in trials:
        restored.on_trial_add(None, t)
    assert {t.trial_id: restored._brackets.index(restored._trial_info[t.trial_id]) for t in trials} == drawn
    (tmp_path / STATE_FILE).write_text((tmp_path / STATE_FILE).read_text().replace('"t0": ' + str(drawn["t0"]), '"t0": 7'))
    again = pickle.loads(started)
    with pytest.raises(CheckpointError, match="trial t0 is in bracket 7 of 3"):
        again.on_trial_add(None, trials[0])
