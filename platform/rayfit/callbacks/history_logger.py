"""Writes the per-epoch history as CSV and JSON: whole once per process, then one row appended per
epoch (rewriting both files every epoch cost more each epoch, and most of a 0.1 s epoch's budget)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from rayfit.loop import Callback, EpochLoop

CLOSE = b"\n]"  # how history.json ends: "[\n{row},\n{row}\n]", one row a line


class HistoryLogger(Callback):
    """The files are written whole at the first epoch end of a process (a resumed run's history is
    its checkpoint's, which leaves out any epoch logged after that checkpoint) and whenever the
    columns change; otherwise each file gets the new row in a single write, so a kill at any moment
    leaves either the previous file or the new one, each complete."""

    def __init__(self, folder: Path) -> None:
        self.csv_path = Path(folder) / "history.csv"
        self.json_path = Path(folder) / "history.json"
        self._columns: list[str] = []  # the CSV header this process wrote
        self._rows = 0  # rows in the files this process wrote
        self._json_size = 0

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        history = loop.state.history
        if self._rows == len(history) - 1 and self._rows and list(history[-1]) == self._columns:
            self.append(history[-1])
        else:
            self.write(history)

    def write(self, history: list[dict[str, float]]) -> None:
        """Both files whole, each written to a temp file and renamed over the old one."""
        columns: list[str] = []
        for row in history:
            columns += [k for k in row if k not in columns]
        tmp = self.csv_path.with_suffix(".csv.tmp")
        tmp.write_text(csv_lines(columns, history, header=True), newline="")
        os.replace(tmp, self.csv_path)
        text = ("[\n" + ",\n".join(json.dumps(row) for row in history)).encode() + CLOSE
        tmp = self.json_path.with_suffix(".json.tmp")
        tmp.write_bytes(text)
        os.replace(tmp, self.json_path)
        self._columns, self._rows, self._json_size = columns, len(history), len(text)

    def append(self, row: dict[str, float]) -> None:
        """One row more: a line at the end of the CSV; in the JSON, the row written over the
        closing bracket and the bracket after it (one pwrite: the file is valid before and after)."""
        with self.csv_path.open("a", newline="") as handle:
            handle.write(csv_lines(self._columns, [row], header=False))
        tail = b",\n" + json.dumps(row).encode() + CLOSE
        fd = os.open(self.json_path, os.O_WRONLY)
        try:
            os.pwrite(fd, tail, self._json_size - len(CLOSE))
        finally:
            os.close(fd)
        self._json_size += len(tail) - len(CLOSE)
        self._rows += 1


def csv_lines(columns: list[str], rows: list[dict[str, float]], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
