"""The progress display, drawn from a run's events: rich bars (epoch and batch, ETA, live metrics)
or plain lines."""

from __future__ import annotations

from rayfit.callbacks.event_stream import EventStream
from rayfit.events import EventLog
from rayfit.loop import EpochLoop
from rayfit.progress import ProgressDisplay


def train(scripted, tmp_path, display, val_losses, batches=2):
    stream = EventStream(EventLog(tmp_path, [display]), "tiny")
    stream.BATCH_EVERY_S = 0.0
    EpochLoop(scripted(val_losses, batches_per_epoch=batches), [stream], epochs=len(val_losses)).train()
    display.close()


def test_bar_mode_draws_epoch_and_batch_bars_with_metrics(scripted, tmp_path, capsys):
    train(scripted, tmp_path, ProgressDisplay(mode="bar"), [0.5, 0.4, 0.3], batches=4)
    out = capsys.readouterr().out
    assert "epoch" in out and "batch" in out and "━" in out
    assert "3/3" in out and "4/4" in out  # both bars complete
    assert "val_loss=0.3" in out  # live metrics on the epoch bar
    assert "epoch 3/3 train_loss=1 val_loss=0.3" in out  # and one line per epoch above the bars


def test_log_mode_prints_one_line_per_epoch_and_no_bars(scripted, tmp_path, capsys):
    train(scripted, tmp_path, ProgressDisplay(mode="log"), [0.5, 0.4])
    out = capsys.readouterr().out
    assert out.count("\n") == 2 and "━" not in out
    assert out.startswith("epoch 1/2 train_loss=1 val_loss=0.5 learning_rate=0.1")


def test_none_mode_prints_nothing(scripted, tmp_path, capsys):
    train(scripted, tmp_path, ProgressDisplay(mode="none"), [0.5])
    assert capsys.readouterr().out == ""
