"""The Python API and the run folder: progress callbacks, outputs, re-running a finished run."""

from __future__ import annotations

import json
import threading

import numpy as np

from rayfit import Trainer
from rayfit.callbacks.checkpoint import CheckpointIndex
from rayfit.cli import main
from rayfit.loop import Callback
from tests.conftest import checkpoint_arrays


def snapshot(folder) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fit_returns_history_and_outputs_and_calls_progress_functions(make_experiment):
    trainer = Trainer(make_experiment(), overrides=["trainer.epochs=2"])
    seen = []
    trainer.register_progress_callback(lambda epoch, metrics: seen.append((epoch, metrics["val_loss"])))
    result = trainer.fit()

    assert [epoch for epoch, _ in seen] == [1, 2]
    assert [loss for _, loss in seen] == [row["val_loss"] for row in result.history]
    assert result.stop_reason == "reached the last epoch (2)"
    assert set(result.test_metrics) == {"test_loss", "test_accuracy", "test_log_loss", "test_f1_macro",
                                        "test_f1_weighted", "test_top3_accuracy"}  # digits: 10 classes
    for name in ("config.yaml", "run.json", "history.csv", "history.json", "plots/curves.png",
                 "model/model.pt", "model/config.yaml", "model/data_info.json"):
        assert (result.run_dir / name).is_file(), name
    status = json.loads((result.run_dir / "run.json").read_text())
    assert status["status"] == "finished" and status["ray_version"].startswith("2.60.")
    header = (result.run_dir / "history.csv").read_text().splitlines()[0].split(",")
    for column in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "learning_rate", "epoch_time_s", "samples_per_s", "peak_memory_mb"):
        assert column in header


def test_rerunning_a_finished_run_says_so_and_changes_nothing(make_experiment, workdir, capsys):
    experiment = make_experiment(trainer={"epochs": 1})
    assert main(["train", str(experiment)]) == 0
    before = snapshot(workdir / "runs")
    capsys.readouterr()
    assert main(["train", str(experiment)]) == 0
    out = capsys.readouterr().out
    assert "already finished" in out and "Nothing was changed" in out
    assert snapshot(workdir / "runs") == before


def test_log_lines_when_output_is_not_a_terminal(make_experiment, capsys):
    Trainer(make_experiment(trainer={"epochs": 2, "progress": "auto"})).fit()
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("epoch ")]
    assert len(lines) == 2
    assert lines[1].startswith("epoch 2/2 train_loss=") and "samples/s" in lines[1]


class PauseOrCancelAt(Callback):
    """A user callback: records its calls, and at `step` asks the trainer to `action` from
    another thread, as a service or a UI thread would."""

    def __init__(self, trainer: Trainer, action: str, step: int) -> None:
        self.trainer, self.action, self.step = trainer, action, step
        self.calls: list[tuple[str, int]] = []

    def on_train_begin(self, loop) -> None:
        self.calls.append(("train_begin", loop.state.step))

    def on_batch_end(self, loop) -> None:
        if loop.state.step == self.step:
            asker = threading.Thread(target=getattr(self.trainer, self.action))
            asker.start()
            asker.join()

    def on_epoch_end(self, loop, metrics) -> None:
        self.calls.append(("epoch_end", loop.state.epoch))

    def on_train_end(self, loop) -> None:
        self.calls.append(("train_end", loop.state.step))


def model_tensors(run_dir) -> list:
    return checkpoint_arrays(CheckpointIndex(run_dir / "checkpoints").latest)


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith(("_s", "_mb"))} for row in history]


def test_pause_from_another_thread_then_resume_equals_a_run_never_paused(make_experiment, workdir):
    """Paused mid-epoch through the control channel (not a signal), resumed by the same call: the
    weights and history are bitwise those of an uninterrupted run. User callbacks run in the loop."""
    sections = {"model": {"type": "mlp", "hidden_units": [32], "dropout": 0.3}, "trainer": {"epochs": 3}}
    reference = Trainer(make_experiment("reference", **sections)).fit()

    experiment = make_experiment("paused", **sections)
    trainer = Trainer(experiment)
    pauser = PauseOrCancelAt(trainer, "pause", step=25)  # epoch 2, batch 5 of 20
    trainer.callbacks.append(pauser)
    events = []
    trainer.register_event_callback(events.append)
    paused = trainer.fit()
    assert paused.interrupted and paused.stop_reason == "pause requested"
    status = json.loads((paused.run_dir / "run.json").read_text())
    assert status["status"] == "paused"
    assert pauser.calls == [("train_begin", 0), ("epoch_end", 1), ("train_end", 26)]  # the next batch
    assert not (paused.run_dir / "control.json").exists()  # the request was used up
    assert events[-1]["type"] == "end" and events[-1]["status"] == "paused"

    again = Trainer(experiment)
    resumed_events = []
    again.register_event_callback(resumed_events.append)
    resumed = again.fit()
    assert resumed.status == "finished"
    for mine, theirs in zip(model_tensors(resumed.run_dir), model_tensors(reference.run_dir), strict=True):
        assert np.array_equal(mine, theirs)
    assert without_timing(resumed.history) == without_timing(reference.history)
    epochs = [e["epoch"] for e in events + resumed_events if e["type"] == "epoch"]
    assert epochs == [1, 2, 3]  # every epoch reached the caller once, in order
    seqs = [e["seq"] for e in events + resumed_events]
    assert seqs == list(range(1, len(seqs) + 1))


def test_cancel_stops_at_the_next_batch_keeps_checkpoints_and_refuses_a_rerun(make_experiment, workdir, capsys):
    experiment = make_experiment("cancelled", trainer={"epochs": 3})
    trainer = Trainer(experiment)
    trainer.callbacks.append(PauseOrCancelAt(trainer, "cancel", step=30))
    result = trainer.fit()
    assert result.cancelled and result.status == "cancelled" and result.model_dir is None
    assert len(result.history) == 1 and not (result.run_dir / "model").exists()
    status = json.loads((result.run_dir / "run.json").read_text())
    assert status["status"] == "cancelled" and status["stop_reason"] == "cancel requested"
    kept = CheckpointIndex(result.run_dir / "checkpoints")
    assert [e.epoch for e in kept.entries] == [1] and kept.latest.is_file()
    before = snapshot(workdir / "runs")
    capsys.readouterr()
    assert main(["train", str(experiment)]) == 0
    assert "was cancelled (cancel requested)" in capsys.readouterr().out
    assert snapshot(workdir / "runs") == before
