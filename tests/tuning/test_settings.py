"""The tune: section's own checks: each bad entry is one line naming the path and the problem."""

from __future__ import annotations

import pytest

from rayfit.config import validate
from rayfit.errors import ConfigError
from rayfit.tuning.settings import AshaOptions, PbtOptions

BASE = {"name": "s", "data": {"source": "sklearn:digits"}}


def sweep(**tune):
    return validate({**BASE, "tune": tune})


@pytest.mark.parametrize("space, message", [
    ({"model.hidden_units": {"choice": []}}, "model.hidden_units: choice: expected a non-empty list"),
    ({"trainer.batch_size": {"grid": []}}, "trainer.batch_size: grid: expected a non-empty list"),
    ({"model.dropout": {"uniform": [0.5, 0.1]}}, "model.dropout: uniform: low 0.5 is above high 0.1"),
    ({"optimizer.lr": {"loguniform": [0.0, 0.1]}}, "optimizer.lr: loguniform: bounds must be positive"),
    ({"optimizer.lr": {"loguniform": [-1, 0.1]}}, "optimizer.lr: loguniform: bounds must be positive"),
    ({"trainer.seed": {"randint": [3, 3]}}, "trainer.seed: randint: [low, high) is empty"),
    ({"trainer.seed": {"randint": [0.5, 3]}}, "trainer.seed: randint: expected two integers"),
    ({"optimizer.lr": {"normal": [0, 1]}}, "optimizer.lr: unknown distribution 'normal'"),
    ({"optimizer.lr": 0.1}, "optimizer.lr: expected one of {loguniform"),
])
def test_bad_search_space_entries_are_refused_in_one_line(space, message):
    with pytest.raises(ConfigError) as caught:
        sweep(search_space=space)
    assert message in str(caught.value)
    assert str(caught.value).startswith("config: tune.search_space: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("scheduler, message", [
    ({"name": "asha", "grace": 1}, "asha has no option 'grace' (its options: grace_period, reduction_factor, max_t, brackets)"),
    ({"name": "fifo", "grace_period": 1}, "fifo has no option 'grace_period' (its options: none)"),
    ({"name": "asha", "reduction_factor": 1}, "asha reduction_factor: Input should be greater than 1"),
    ({"name": "bohb"}, "unknown scheduler 'bohb'; expected one of fifo, asha, hyperband, median_stopping, pbt"),
    ({"name": "pbt", "mutations": {"optimizer.lr": {"uniform": [1, 0]}}}, "uniform: low 1 is above high 0"),
])
def test_unknown_or_bad_scheduler_options_are_refused(scheduler, message):
    with pytest.raises(ConfigError, match="tune.scheduler") as caught:
        sweep(scheduler=scheduler)
    assert message in str(caught.value)


def test_the_issue_shape_is_accepted_with_each_scheduler_s_options():
    cfg = sweep(metric="val_accuracy", mode="max", num_samples=16, max_concurrent_trials="auto", time_budget_s=None,
                search_space={"optimizer.lr": {"loguniform": [1e-4, 1e-1]}, "model.dropout": {"uniform": [0.0, 0.5]},
                              "model.hidden_units": {"choice": [[64], [256, 128]]},
                              "trainer.batch_size": {"grid": [32, 128]}, "trainer.seed": {"randint": [0, 1000]}},
                scheduler={"name": "asha", "grace_period": 2, "reduction_factor": 3}, searcher={"name": "random"})
    assert cfg.tune is not None
    assert cfg.tune.scheduler_options() == AshaOptions(grace_period=2, reduction_factor=3)
    pbt = sweep(scheduler={"name": "pbt", "perturbation_interval": 2, "mutations": {"optimizer.lr": {"uniform": [0.1, 1]}}})
    assert isinstance(pbt.tune.scheduler_options(), PbtOptions)
    assert pbt.tune.scheduler_options().perturbation_interval == 2


def test_the_tune_section_stays_out_of_a_run_s_config():
    cfg = sweep(search_space={"optimizer.lr": {"uniform": [0.1, 1]}})
    assert "tune" not in cfg.model_dump() and not any(k.startswith("tune") for k in cfg.flat())


def test_concurrency_must_be_auto_or_positive():
    with pytest.raises(ConfigError, match="tune.max_concurrent_trials"):
        sweep(max_concurrent_trials=0)
