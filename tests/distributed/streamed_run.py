"""The checks a streamed run must pass on either backend (the torch test in test_ray_train.py and
the TensorFlow one in test_tf_streaming.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rayfit.callbacks.checkpoint import CheckpointIndex
from rayfit.data.streaming import plan_stream
from rayfit.inference import SavedModel
from rayfit.trainer import FitResult, Trainer
from tests.conftest import read_checkpoint


def assert_streamed_run_scored_exactly_the_test_rows(trainer: Trainer, result: FitResult, folder: Path,
                                                     workers: int, batch_size: int) -> None:
    """Each worker trained its shard of the train rows (the step count), and the test metric is
    the exported model's accuracy on exactly the rows the split rule puts in the test set."""
    plan = plan_stream(trainer.config.data, seed=1)
    per_rank = plan.rows["train"] // max(workers, 1)
    latest = CheckpointIndex(result.run_dir / "checkpoints").latest
    assert read_checkpoint(latest)["loop"]["step"] == math.ceil(per_rank / batch_size)
    rules = plan.rules[str(folder)]
    rows = pd.concat([pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))], ignore_index=True)
    x, y = rules.clean(rows, "all rows")
    test_rows = rows[rules.split(x, y) == 2]
    assert len(test_rows) == plan.rows["test"] > 350
    predicted = SavedModel(result.run_dir).predict_frame(test_rows, "test rows")
    accuracy = float(np.mean(np.asarray(predicted) == test_rows["label"].to_numpy()))
    assert result.test_metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert accuracy > 0.8  # 3 classes: chance is 1/3
