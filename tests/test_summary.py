"""The end-of-run summary: how the run ended, its best epoch by the checkpoint monitor, test metrics."""

from __future__ import annotations

from pathlib import Path

from rayfit.config import validate
from rayfit.session import FitResult
from rayfit.summary import best_epoch, summary_lines

HISTORY = [
    {"epoch": 1.0, "val_loss": 0.5, "val_accuracy": 0.80, "val_precision": 0.7},
    {"epoch": 2.0, "val_loss": 0.3, "val_accuracy": 0.85, "val_precision": 0.9},
    {"epoch": 3.0, "val_loss": 0.4, "val_accuracy": 0.90, "val_precision": 0.8},
]


def test_the_best_epoch_follows_the_monitors_direction():
    assert best_epoch(HISTORY, "val_loss", "auto")["epoch"] == 2.0  # a loss falls
    assert best_epoch(HISTORY, "val_accuracy", "auto")["epoch"] == 3.0  # an accuracy rises
    assert best_epoch(HISTORY, "val_precision", "auto")["epoch"] == 2.0  # as checkpoints rank it
    assert best_epoch(HISTORY, "val_loss", "max")["epoch"] == 1.0  # a mode given wins over the name
    assert best_epoch(HISTORY + [{"epoch": 4.0, "val_loss": float("nan")}], "val_loss", "auto")["epoch"] == 2.0
    assert best_epoch(HISTORY, "val_f1", "auto") is None


def test_summary_lines_of_a_paused_run():
    cfg = validate({"name": "tiny", "data": {"source": "sklearn:iris"}})
    result = FitResult(Path("/runs/tiny"), HISTORY, "pause requested", {"test_accuracy": 0.9}, interrupted=True)
    assert summary_lines(result, cfg, 12.34) == [
        "tiny paused after 3 epoch(s) in 12.3 s: pause requested",
        "best val_loss 0.3 at epoch 2",
        "test: accuracy=0.9",
        "outputs: /runs/tiny",
        "run the same command again to resume",
    ]
