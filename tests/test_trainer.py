"""The Python API and the run folder: progress callbacks, outputs, re-running a finished run."""

from __future__ import annotations

import json

from rayfit import Trainer
from rayfit.cli import main


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
