"""Early-stopping decisions on scripted validation-loss sequences, through the real loop."""

from __future__ import annotations

import pytest

from rayfit.callbacks.early_stopping import EarlyStopping
from rayfit.loop import EpochLoop


def run(scripted, losses: list[float], **options) -> tuple[EpochLoop, EarlyStopping]:
    stopper = EarlyStopping(monitor="val_loss", **options)
    loop = EpochLoop(scripted(losses, batches_per_epoch=2), [stopper], epochs=len(losses))
    loop.train()
    return loop, stopper


@pytest.mark.parametrize(
    "losses, options, stop_epoch, best_epoch",
    [
        # patience 2: two epochs without improvement after epoch 2's best
        ([1.0, 0.5, 0.6, 0.7, 0.4, 0.3], {"patience": 2}, 4, 2),
        # the improvement at epoch 5 comes in time with patience 3
        ([1.0, 0.5, 0.6, 0.7, 0.4, 0.5, 0.6, 0.7], {"patience": 3}, 8, 5),
        # improvements smaller than min_delta do not count
        ([1.0, 0.95, 0.92, 0.91, 0.9], {"patience": 2, "min_delta": 0.1}, 3, 1),
        # nothing beats the baseline: stop after `patience` epochs, no best at all
        ([1.0, 0.9, 0.8, 0.7], {"patience": 2, "baseline": 0.5}, 2, 0),
        # baseline beaten at epoch 3
        ([1.0, 0.9, 0.4, 0.45, 0.5], {"patience": 3, "baseline": 0.5}, 5, 3),
        # epochs up to start_from_epoch are not judged (the bad epochs 1-3 are ignored)
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], {"patience": 1, "start_from_epoch": 3}, 5, 4),
        # patience 0 stops at the first epoch that does not improve
        ([1.0, 0.5, 0.5], {"patience": 0}, 3, 2),
        # mode max on a loss: every decrease is a non-improvement
        ([1.0, 0.5, 0.4], {"patience": 1, "mode": "max"}, 2, 1),
    ],
)
def test_stop_epoch_and_best(scripted, losses, options, stop_epoch, best_epoch):
    loop, stopper = run(scripted, losses, **options)
    assert loop.state.epoch == stop_epoch
    assert stopper.best_epoch == best_epoch
    if stop_epoch < len(losses):
        assert loop.state.stop_reason.startswith("early stopping: val_loss did not improve")


def test_restores_best_weights_whatever_ended_the_run(scripted):
    # the last epoch ends the run (no early stop), yet weights go back to epoch 2's
    loop, stopper = run(scripted, [1.0, 0.2, 0.5, 0.6], patience=10)
    assert loop.state.stop_reason == "reached the last epoch (4)"
    assert loop.backend.weights == 2 * 2  # 2 batches per epoch, best after epoch 2


def test_no_restore_when_disabled(scripted):
    loop, _ = run(scripted, [1.0, 0.2, 0.5, 0.6], patience=1, restore_best=False)
    assert loop.state.epoch == 3
    assert loop.backend.weights == 3 * 2


def test_unknown_monitor_names_the_field(scripted):
    from rayfit.errors import ConfigError

    stopper = EarlyStopping(monitor="val_acc")
    loop = EpochLoop(scripted([1.0]), [stopper], epochs=1)
    with pytest.raises(ConfigError, match="early_stopping.monitor: no metric 'val_acc'"):
        loop.train()


def test_state_round_trip_continues_the_count(scripted):
    first, stopper = run(scripted, [1.0, 0.5, 0.6], patience=3)
    resumed = EarlyStopping(monitor="val_loss", patience=3)
    resumed.load_state_dict(stopper.state_dict())
    assert (resumed.best, resumed.best_epoch, resumed.wait) == (0.5, 2, 1)
