"""The live table of a sweep's trials, fed by Tune's callbacks in the driver: a rich table that
redraws on a terminal, one plain line per change in a pipe or a log file."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.table import Table


def short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class TrialTable(Callback):
    """Rows: trial, its sampled values, epochs, latest and best metric, state."""

    def __init__(self, metric: str, mode: str, params: list[str]) -> None:
        self.metric, self.mode, self.params = metric, mode, params
        self.rows: dict[str, dict[str, Any]] = {}
        self._console: Console | None = None
        self._live: Live | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the sweep: the terminal is this process's own."""
        return self.__dict__ | {"_console": None, "_live": None}

    def setup(self, **info: Any) -> None:
        self._console = Console(stderr=True)
        if self._console.is_terminal:
            self._live = Live(self.render(), console=self._console, refresh_per_second=2, transient=False)
            self._live.start()

    def row(self, trial: Any) -> dict[str, Any]:
        return self.rows.setdefault(trial.trial_id, {
            "config": {p: trial.config.get(p) for p in self.params}, "epochs": 0, "latest": None,
            "best": None, "state": "PENDING"})

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.update(trial, state="RUNNING")

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
        row = self.row(trial)
        value = result.get(self.metric)
        better = row["best"] is None or (value is not None and (value > row["best"] if self.mode == "max"
                                                                   else value < row["best"]))
        self.update(trial, epochs=int(result.get("epoch", 0)), latest=value,
                    best=value if better else row["best"], state="RUNNING")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.update(trial, state="DONE")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.update(trial, state="ERROR")

    def update(self, trial: Any, **fields: Any) -> None:
        row = self.row(trial)
        row.update(fields, config={p: trial.config.get(p) for p in self.params})
        if self._live is not None:
            self._live.update(self.render())
        elif self._console is not None:
            self._console.print(self.line(trial.trial_id, row), highlight=False, soft_wrap=True)

    def line(self, trial_id: str, row: dict[str, Any]) -> str:
        config = " ".join(f"{p}={short(v)}" for p, v in row["config"].items())
        return (f"trial {trial_id} {row['state'].lower()} epoch {row['epochs']} {self.metric}="
                f"{short(row['latest'])} best={short(row['best'])} {config}")

    def render(self) -> Table:
        table = Table(title="trials", title_justify="left")
        for column in ("trial", *self.params, "epochs", self.metric, f"best {self.mode}", "state"):
            table.add_column(column)
        for trial_id, row in self.rows.items():
            table.add_row(trial_id, *(short(row["config"][p]) for p in self.params), str(row["epochs"]),
                          short(row["latest"]), short(row["best"]), row["state"])
        return table

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self._live is not None:
            self._live.stop()
