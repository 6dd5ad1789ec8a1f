"""Writes the per-epoch history as CSV and JSON, rewritten whole each epoch (it is small)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from rayfit.loop import Callback, EpochLoop


class HistoryLogger(Callback):
    def __init__(self, folder: Path) -> None:
        self.csv_path = Path(folder) / "history.csv"
        self.json_path = Path(folder) / "history.json"

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        self.write(loop.state.history)

    def write(self, history: list[dict[str, float]]) -> None:
        columns: list[str] = []
        for row in history:
            columns += [k for k in row if k not in columns]
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)
        os.replace(tmp, self.csv_path)
        tmp = self.json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(history, indent=1))
        os.replace(tmp, self.json_path)
