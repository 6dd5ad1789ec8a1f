"""`rayfit runs`: list the run folders under a storage folder, show one, compare two.

Run folders may come from someone else (a colleague, a shared disk): every file is read as untrusted
(size-capped, safe parsers, types checked), and a run that cannot be read is one line, not a traceback.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rayfit.callbacks.monitor import resolve_mode
from rayfit.config import flatten
from rayfit.errors import CheckpointError, ConfigError

MAX_FILE_BYTES = 20_000_000  # a run's own JSON/YAML files are far smaller; more is not a run's
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # ExperimentConfig.name: never a path elsewhere
HIGHLIGHTS = (
    "backend", "data.source", "data.target", "model.type", "model.hidden_units", "optimizer.name",
    "optimizer.lr", "schedule.name", "trainer.epochs", "trainer.batch_size", "trainer.seed",
)
TAIL = 5  # epochs of history `runs show` prints
Grid = tuple[list[str], list[list[str]]]  # a table: headers, rows of cells
Part = str | Grid  # what the views return: lines and tables, printed by render()


@dataclass
class RunView:
    """What the files of one run folder say about it."""

    name: str
    path: Path
    status: dict[str, Any]
    config: dict[str, Any]  # flattened
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def monitor(self) -> tuple[str, str]:
        """The monitored metric (checkpoint.monitor) and the way it improves."""
        monitor = str(self.config.get("checkpoint.monitor") or "val_loss")
        return monitor, resolve_mode(monitor, str(self.config.get("checkpoint.mode") or "auto"))

    @property
    def best(self) -> float | None:
        monitor, mode = self.monitor
        values = [row[monitor] for row in self.history if _is_number(row.get(monitor))]
        if not values:
            return None
        return min(values) if mode == "min" else max(values)

    @property
    def epochs(self) -> str:
        return f"{len(self.history)}/{self.config.get('trainer.epochs', '?')}"

    @property
    def test_metrics(self) -> dict[str, float]:
        metrics = self.status.get("test_metrics")
        return {str(k): v for k, v in metrics.items() if _is_number(v)} if isinstance(metrics, dict) else {}

    def final(self) -> dict[str, float]:
        """The last epoch's metrics, then the best monitored value and the test metrics."""
        last = self.history[-1] if self.history else {}
        monitor, mode = self.monitor
        best = {f"best {monitor} ({mode})": self.best} if self.best is not None else {}
        return {k: v for k, v in last.items() if _is_number(v)} | best | self.test_metrics


def read_run(folder: Path) -> RunView:
    """One run folder; CheckpointError naming the file when run.json or config.yaml is unusable."""
    folder = Path(folder)
    status = _read(folder / "run.json", json.loads)
    if not isinstance(status, dict):
        raise CheckpointError(f"{folder / 'run.json'}: expected a JSON object, got {type(status).__name__}")
    config = _read(folder / "config.yaml", yaml.safe_load) if (folder / "config.yaml").is_file() else {}
    if not isinstance(config, dict):
        raise CheckpointError(f"{folder / 'config.yaml'}: expected a mapping of sections")
    history: Any = []
    if (folder / "history.json").is_file():
        history = _read(folder / "history.json", json.loads)
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        raise CheckpointError(f"{folder / 'history.json'}: expected a list of per-epoch objects")
    return RunView(folder.name, folder, status, flatten(config), history)


def _read(path: Path, parse: Any) -> Any:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise CheckpointError(f"{path}: {path.stat().st_size} bytes is too large for a run file")
        return parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:  # JSONDecodeError is a ValueError
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: unreadable ({reason[:160]})") from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def storage_folder(storage: str | None) -> Path:
    """--storage DIR, or ./runs; an explicit folder that does not exist is refused."""
    folder = Path(storage or "runs")
    if storage is not None and not folder.is_dir():
        raise ConfigError(f"--storage {storage}: no such folder")
    return folder


def find_run(storage: Path, name: str) -> RunView:
    """The run `name` under `storage`; a name is never a path (no '/', no '..')."""
    if not NAME.match(name):
        raise ConfigError(f"run name {name!r}: expected letters, digits, '_', '.', '-' (a name under {storage})")
    folder = storage / name
    if not (folder / "run.json").is_file():
        known = sorted(p.parent.name for p in storage.glob("*/run.json")) if storage.is_dir() else []
        hint = f"; runs there: {', '.join(known[:8])}" if known else ""
        raise ConfigError(f"{name}: no run of that name in {storage}{hint}")
    return read_run(folder)


# ------------------------------------------------------------------------------------ output


def list_runs(storage: Path) -> Part:
    """A table of the runs under `storage` (a line saying there are none otherwise)."""
    folders = sorted(p.parent for p in storage.glob("*/run.json")) if storage.is_dir() else []
    if not folders:
        return f"no runs in {storage}/ yet; train one with: rayfit train EXPERIMENT"
    rows = []
    for folder in folders:
        try:
            run = read_run(folder)
        except CheckpointError as exc:
            rows.append([folder.name, "unreadable", "", "", "", str(exc).removeprefix(f"{folder}/")])
            continue
        monitor, _ = run.monitor
        best = f"{run.best:.4g} {monitor}" if run.best is not None else ""
        rows.append([run.name, str(run.status.get("status", "?")), run.epochs, best,
                     _when(run.status.get("created")), str(run.status.get("stop_reason") or "")])
    return ["name", "status", "epochs", "best", "started", "stop reason"], rows


def show_run(run: RunView) -> list[Part]:
    """One run: config highlights, status, history tail, test metrics and where its files are."""
    parts: list[Part] = [
        f"run {run.name}: {run.status.get('status', '?')}, {run.epochs} epochs, started "
        f"{_when(run.status.get('created'))}",
    ]
    if run.status.get("stop_reason"):
        parts.append(f"stopped: {run.status['stop_reason']}")
    parts.append((["setting", "value"], [[k, _text(run.config[k])] for k in HIGHLIGHTS if k in run.config]))
    if run.history:
        columns = [k for k in run.history[-1] if _is_number(run.history[-1][k]) and k != "epoch"]
        rows = [[_text(row.get("epoch", "")), *(_text(row.get(k, "")) for k in columns)] for row in run.history[-TAIL:]]
        parts.append((["epoch", *columns], rows))
    if run.test_metrics:
        parts.append((["test metric", "value"], [[k, _text(v)] for k, v in run.test_metrics.items()]))
    files = [("folder", run.path), ("model", run.path / "model"), ("checkpoints", run.path / "checkpoints"),
             ("history", run.path / "history.csv"), ("curves", run.path / "plots" / "curves.png")]
    parts.append((["files", "path"], [[k, str(p)] for k, p in files if p.exists()]))
    return parts


def compare_runs(a: RunView, b: RunView) -> list[Part]:
    """Config differences, then final and best metrics, side by side."""
    keys = sorted(k for k in a.config.keys() | b.config.keys() if a.config.get(k) != b.config.get(k))
    diff = [[k, _text(a.config.get(k, "-")), _text(b.config.get(k, "-"))] for k in keys]
    fa, fb = a.final(), b.final()
    metrics = [[k, _text(fa.get(k, "-")), _text(fb.get(k, "-"))] for k in [*fa, *(k for k in fb if k not in fa)]]
    parts: list[Part] = []
    parts.append((["setting", a.name, b.name], diff) if diff else "the configs are the same")
    parts.append((["metric", a.name, b.name], metrics))
    return parts


def _when(created: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if _is_number(created) else "?"


def _text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render(parts: list[Part] | Part) -> None:
    """Print lines and tables: rich tables on a terminal, plain aligned columns in a pipe."""
    items = parts if isinstance(parts, list) else [parts]
    terminal = sys.stdout.isatty()
    for item in items:
        if isinstance(item, str):
            print(item)
        elif terminal:
            from rich.console import Console
            from rich.table import Table

            table = Table(*item[0])
            for row in item[1]:
                table.add_row(*row)
            Console().print(table)
        else:
            print(plain_table(*item))


def plain_table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, for pipes and files (`cut`, `awk` and eyes)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [headers, *rows])
