"""A sweep's outputs from its trials' folders: the best trial, trials.csv, the plots."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from PIL import Image

from rayfit.run_folder import RunFolder
from rayfit.tuning.outputs import plot_curves, plot_parallel, read_trial, score, write_table


def trial_folder(root: Path, name: str, accuracies: list[float], status: str, reason: str | None = None) -> RunFolder:
    run = RunFolder(root / name)
    run.path.mkdir(parents=True)
    run.update({"status": status, "stop_reason": reason})
    rows = [{"epoch": float(i + 1), "val_accuracy": a} for i, a in enumerate(accuracies)]
    (run.path / "history.json").write_text(json.dumps(rows))
    return run


def test_trials_are_read_scored_and_tabled_with_what_stopped_them(tmp_path):
    done = read_trial(trial_folder(tmp_path, "a", [0.5, 0.9, 0.8], "finished", "reached the last epoch (3)"),
                      {"optimizer.lr": 0.01, "model.hidden_units": [8]}, None, "the asha scheduler")
    stopped = read_trial(trial_folder(tmp_path, "b", [0.2], "running"),
                         {"optimizer.lr": 1e-5, "model.hidden_units": [16]}, None, "the asha scheduler")
    broken = read_trial(trial_folder(tmp_path, "c", [], "running"), {"optimizer.lr": 0.1, "model.hidden_units": [8]},
                        ValueError("bad\nmore"), "the asha scheduler")
    best = score([done, stopped, broken], "val_accuracy", "max")
    assert best is done and (done.best, done.best_epoch) == (0.9, 2)
    assert score([done, stopped], "val_accuracy", "min") is stopped
    table = pd.read_csv(write_table([done, stopped, broken], "val_accuracy", tmp_path / "trials.csv"))
    assert list(table["trial"]) == ["a", "b", "c"] and list(table["epochs"]) == [3, 1, 0]
    assert list(table["stopped"]) == ["reached the last epoch (3)", "stopped by the asha scheduler after epoch 1",
                                      "error: bad"]
    assert list(table["config.model.hidden_units"]) == ["[8]", "[16]", "[8]"]
    for png in (plot_curves([done, stopped], "val_accuracy", best, tmp_path / "curves.png"),
                plot_parallel([done, stopped, broken], "val_accuracy", tmp_path / "parallel.png")):
        assert Image.open(png).size[0] > 300
