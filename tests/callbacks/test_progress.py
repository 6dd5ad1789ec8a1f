"""The progress display: rich bars (epoch and batch, ETA, live metrics) or plain log lines."""

from __future__ import annotations

from rayfit.callbacks.progress import ProgressBar
from rayfit.loop import EpochLoop


def test_bar_mode_draws_epoch_and_batch_bars_with_metrics(scripted, capsys):
    bar = ProgressBar(mode="bar", refresh_s=0.0)
    EpochLoop(scripted([0.5, 0.4, 0.3], batches_per_epoch=4), [bar], epochs=3).train()
    out = capsys.readouterr().out
    assert "epoch" in out and "batch" in out and "━" in out
    assert "3/3" in out and "4/4" in out  # both bars complete
    assert "val_loss=0.3" in out  # live metrics on the epoch bar
    assert "epoch 3/3 train_loss=1 val_loss=0.3" in out  # and one line per epoch above the bars


def test_log_mode_prints_one_line_per_epoch_and_no_bars(scripted, capsys):
    EpochLoop(scripted([0.5, 0.4]), [ProgressBar(mode="log")], epochs=2).train()
    out = capsys.readouterr().out
    assert out.count("\n") == 2 and "━" not in out
    assert out.startswith("epoch 1/2 train_loss=1 val_loss=0.5 learning_rate=0.1")


def test_none_mode_prints_nothing(scripted, capsys):
    EpochLoop(scripted([0.5]), [ProgressBar(mode="none")], epochs=1).train()
    assert capsys.readouterr().out == ""
