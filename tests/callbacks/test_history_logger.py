"""history.csv and history.json: written whole once per process, then appended one row an epoch,
always equal to the loop's history."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

from rayfit.callbacks.history_logger import HistoryLogger
from rayfit.loop import Callback, EpochLoop


def read_back(folder: Path) -> tuple[list[dict], list[dict]]:
    rows = json.loads((folder / "history.json").read_text())
    with (folder / "history.csv").open(newline="") as handle:
        table = [{k: float(v) if v else None for k, v in r.items()} for r in csv.DictReader(handle)]
    return rows, table


def test_files_hold_the_history_after_every_epoch(scripted, tmp_path):
    inodes = []

    class Check(Callback):  # runs after the logger at each epoch end
        def on_epoch_end(self, loop, metrics):
            rows, table = read_back(tmp_path)
            assert rows == loop.state.history
            assert table == loop.state.history
            inodes.append({(tmp_path / f"history.{ext}").stat().st_ino for ext in ("csv", "json")})

    state = EpochLoop(scripted([0.5, 0.4, 0.3, 0.2]), [HistoryLogger(tmp_path), Check()], epochs=4).train()
    assert len(state.history) == 4
    assert inodes[1:] == inodes[:1] * 3  # written once, then appended to: the same files


def test_a_resumed_process_rewrites_what_its_checkpoint_does_not_hold(scripted, tmp_path):
    first = EpochLoop(scripted([0.5, 0.4, 0.3]), [HistoryLogger(tmp_path)], epochs=3)
    first.train()
    # a resume from the checkpoint of epoch 1: epochs 2 and 3 were logged, then lost with the kill
    backend = scripted([0.5, 0.35, 0.25])
    resumed = EpochLoop(backend, [HistoryLogger(tmp_path)], epochs=3)
    resumed.state.history, resumed.state.epoch = first.state.history[:1], 1
    state = resumed.train()
    rows, table = read_back(tmp_path)
    assert [r["val_loss"] for r in rows] == [0.5, 0.35, 0.25] == [r["val_loss"] for r in table]
    assert rows == state.history


def as_loop(history: list[dict]) -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(history=history))


def test_a_new_column_rewrites_the_files_with_every_column(tmp_path):
    logger, history = HistoryLogger(tmp_path), [{"epoch": 1.0, "val_loss": 0.5}]
    logger.on_epoch_end(as_loop(history), history[-1])
    history.append({"epoch": 2.0, "val_loss": 0.4, "extra": 1.0})
    logger.on_epoch_end(as_loop(history), history[-1])
    rows, table = read_back(tmp_path)
    assert rows == history
    assert [r["extra"] for r in table] == [None, 1.0]
