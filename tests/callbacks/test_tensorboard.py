"""tracking.tensorboard: the epoch metrics and learning rate as TensorBoard scalars in the run folder,
read back from the event files with TensorFlow's own reader."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from rayfit import Trainer


def scalars(folder: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} over every event file in `folder`, in the order TensorBoard reads them."""
    import tensorflow as tf

    found: dict[str, dict[int, float]] = defaultdict(dict)
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found[value.tag][event.step] = value.simple_value
    return found


def test_epoch_metrics_are_tensorboard_scalars(make_experiment):
    experiment = make_experiment(tracking={"enabled": False, "tensorboard": True},
                                 schedule={"name": "cosine"})
    result = Trainer(experiment).fit()
    written = scalars(result.run_dir / "tensorboard")
    for key in ("train_loss", "val_loss", "val_accuracy", "learning_rate", "time_step_s"):
        assert sorted(written[key]) == [1, 2, 3], key
        assert [written[key][step] for step in (1, 2, 3)] == pytest.approx(
            [row[key] for row in result.history], rel=1e-6), key
    assert written["learning_rate"][3] < written["learning_rate"][1]  # the schedule is visible
    assert "epoch" not in written  # the step is the epoch


def test_no_tensorboard_folder_unless_asked(make_experiment):
    result = Trainer(make_experiment(trainer={"epochs": 1})).fit()
    assert not (result.run_dir / "tensorboard").exists()
