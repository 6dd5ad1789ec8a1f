"""Search spaces against the experiment schema: paths, value ranges, the metric, trial counts."""

from __future__ import annotations

import pytest

from rayfit.config import validate
from rayfit.errors import ConfigError
from rayfit.tuning.space import check_sweep, param_space, trial_config, trial_count

BASE = {"name": "s", "data": {"source": "sklearn:digits", "task": "multiclass"}}


def sweep(data=None, **tune):
    return validate({**BASE, "data": {**BASE["data"], **(data or {})}, "tune": tune})


@pytest.mark.parametrize("path, message", [
    ("optimizer.lrr", "tune.search_space.optimizer.lrr: unknown config path; did you mean optimizer.lr?"),
    ("modl.dropout", "tune.search_space.modl.dropout: unknown config path; did you mean model?"),
    ("model.hidden_units.first", "model.hidden_units is a value, not a section"),
    ("tune.num_samples", "tune.search_space.tune.num_samples: unknown config path"),
])
def test_an_unknown_config_path_is_refused(path, message):
    with pytest.raises(ConfigError) as caught:
        check_sweep(sweep(search_space={path: {"choice": [1]}}))
    assert message in str(caught.value)


def test_a_trial_s_scaling_is_not_sampled():
    with pytest.raises(ConfigError, match=r"tune.search_space.scaling.num_workers: a trial's scaling cannot be sampled"):
        check_sweep(sweep(search_space={"scaling.num_workers": {"choice": [0, 2]}}))
    with pytest.raises(ConfigError, match=r"tune.scheduler.mutations.scaling.use_gpu: a trial's scaling"):
        check_sweep(sweep(scheduler={"name": "pbt", "mutations": {"scaling.use_gpu": {"choice": [False, True]}}}))


def test_a_dict_field_takes_any_key_and_values_are_checked_by_the_field():
    check_sweep(sweep(search_space={"model.kwargs.width": {"choice": [1, 2]}}))
    with pytest.raises(ConfigError, match=r"tune.search_space.model.dropout: the value 1.5 is refused \(model.dropout"):
        check_sweep(sweep(search_space={"model.dropout": {"uniform": [0.0, 1.5]}}))
    with pytest.raises(ConfigError, match=r"tune.scheduler.mutations.optimizer.name: the value 'lion' is refused"):
        check_sweep(sweep(scheduler={"name": "pbt", "mutations": {"optimizer.name": {"choice": ["adam", "lion"]}}}))


def test_a_metric_the_loop_never_reports_is_refused():
    with pytest.raises(ConfigError, match="tune.metric: 'val_acc' is not reported .* val_accuracy"):
        check_sweep(sweep(metric="val_acc"))
    with pytest.raises(ConfigError, match="tune.metric: 'val_accuracy' is not reported .*regression"):
        check_sweep(sweep(data={"task": "regression"}, metric="val_accuracy"))
    with pytest.raises(ConfigError, match="'val_loss' is not reported"):  # no validation split
        check_sweep(sweep(data={"val_fraction": 0.0}, metric="val_loss"))
    check_sweep(sweep(data={"task": "auto"}, metric="val_accuracy", mode="max"))  # digits: multiclass


def test_trials_are_num_samples_times_the_grid():
    space = {"optimizer.lr": {"uniform": [0.1, 1]}, "trainer.batch_size": {"grid": [32, 64]},
             "model.hidden_units": {"choice": [[8], [16], [32]]}}
    assert trial_count(sweep(num_samples=3, search_space=space)) == 6
    assert trial_count(sweep(num_samples=3, search_space=space, searcher={"name": "grid"})) == 18
    assert param_space(sweep(search_space=space))["trainer.batch_size"] == {"grid_search": [32, 64]}


def test_a_trial_config_puts_values_at_their_paths_under_the_sweep_folder():
    cfg = sweep(search_space={"optimizer.lr": {"uniform": [0.1, 1]}})
    trial = trial_config(cfg.model_dump(mode="json"), {"optimizer.lr": 0.5, "model.hidden_units": [4]}, "t1", "/x/trials")
    assert (trial.name, trial.optimizer.lr, trial.model.hidden_units) == ("t1", 0.5, [4])
    assert trial.tracking.storage == "/x/trials" and trial.tune is None
