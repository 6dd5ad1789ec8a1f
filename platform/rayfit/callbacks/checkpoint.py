"""Checkpoints every N epochs and/or steps, with best-K and last-N retention as separate policies.

`index.json` names the files that exist and which is latest; it is replaced atomically after the
checkpoint file itself is in place, so a kill at any moment leaves the previous latest intact.
The state is serialized on the loop's thread and written on a background one (`BackgroundWrites`):
a kill before that write ends loses only that checkpoint, and the resumed run redoes its epochs.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rayfit.atomic_file import write_atomic
from rayfit.callbacks.background_writes import BackgroundWrites
from rayfit.callbacks.monitor import resolve_mode
from rayfit.errors import CheckpointError, first_line
from rayfit.loop import Callback, EpochLoop

log = logging.getLogger("rayfit")
INDEX = "index.json"
# The only names rayfit writes: a name read from index.json that is not one of these (a path, `..`,
# another file) is refused, so a doctored index can neither delete nor load a file of its choice.
NAME = re.compile(r"ckpt-epoch(\d{4,})-step(\d{7,})\.(pt|npz)")
_REINDEXED: set[Path] = set()


def checkpoint_name(epoch: int, step: int, suffix: str) -> str:
    return f"ckpt-epoch{epoch:04d}-step{step:07d}{suffix}"


@dataclass(frozen=True)
class Saved:
    """The last save asked for: every rank knows its epoch and step; `path` is the writer's file."""

    epoch: int
    step: int
    path: Path | None


@dataclass
class Entry:
    file: str
    epoch: int  # epochs completed
    step: int
    metric: float | None  # the monitored value, for epoch-end checkpoints


class CheckpointIndex:
    """The list of checkpoints in a folder, read and written as one JSON file.

    Everything read from the folder is untrusted (it may come from someone else): each entry must
    name a checkpoint file of rayfit's own form that lies in the folder, or the index is refused.
    Without index.json, the checkpoint files present are indexed again from their names.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.entries: list[Entry] = []
        path = folder / INDEX
        if path.is_file():
            self.entries = [self._checked(raw) for raw in self._read(path)]
        elif folder.is_dir():
            self.entries = self._rebuilt()

    def _read(self, path: Path) -> list[Any]:
        try:
            checkpoints = json.loads(path.read_text(encoding="utf-8"))["checkpoints"]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{path}: not a checkpoint index ({first_line(exc)})") from exc
        if not isinstance(checkpoints, list):
            raise CheckpointError(f"{path}: 'checkpoints' is not a list")
        return checkpoints

    def _checked(self, raw: Any) -> Entry:
        """An index entry whose file is a checkpoint name in this folder (symlinks resolved)."""
        bad = f"{self.folder / INDEX}: refused entry {json.dumps(raw)[:120]}"
        if not isinstance(raw, dict) or set(raw) != {"file", "epoch", "step", "metric"}:
            raise CheckpointError(f"{bad}: expected keys file, epoch, step, metric")
        name, epoch, step, metric = raw["file"], raw["epoch"], raw["step"], raw["metric"]
        match = NAME.fullmatch(name) if isinstance(name, str) else None
        if match is None:
            raise CheckpointError(f"{bad}: not a checkpoint file name of the form ckpt-epochNNNN-stepNNNNNNN.pt")
        if (int(match[1]), int(match[2])) != (epoch, step) or type(epoch) is not int or type(step) is not int:
            raise CheckpointError(f"{bad}: epoch and step do not match the file name")
        if metric is not None and (isinstance(metric, bool) or not isinstance(metric, (int, float))):
            raise CheckpointError(f"{bad}: metric is not a number")
        if (self.folder / name).resolve().parent != self.folder.resolve():
            raise CheckpointError(f"{bad}: the file leads outside {self.folder}")
        return Entry(name, epoch, step, metric)

    def _rebuilt(self) -> list[Entry]:
        """Entries for the checkpoint files present, oldest first (their metrics are not known)."""
        found = [(p.name, NAME.fullmatch(p.name)) for p in self.folder.iterdir() if p.is_file()]
        entries = [self._checked({"file": name, "epoch": int(m[1]), "step": int(m[2]), "metric": None})
                   for name, m in found if m is not None]
        entries.sort(key=lambda e: (e.step, e.epoch))
        if entries and self.folder not in _REINDEXED:  # the driver and the loop both read the index: say it once
            _REINDEXED.add(self.folder)
            log.warning("%s: %s is missing; indexed the %d checkpoint files there again from their names",
                        self.folder, INDEX, len(entries))
        return entries

    @property
    def latest(self) -> Path | None:
        return self.folder / self.entries[-1].file if self.entries else None

    def best(self, k: int, mode: str) -> list[Entry]:
        scored = [e for e in self.entries if e.metric is not None]
        scored.sort(key=lambda e: e.metric if mode == "min" else -e.metric)  # type: ignore[operator]
        return scored[:k]

    def write(self) -> None:
        tmp = self.folder / (INDEX + ".tmp")
        tmp.write_text(json.dumps({"checkpoints": [asdict(e) for e in self.entries]}, indent=1))
        os.replace(tmp, self.folder / INDEX)


class Checkpointing(Callback):
    """Save the loop every `every_epochs` epochs and every `every_steps` steps (0 turns either off),
    on SIGTERM/SIGINT and on an exception; keep the `keep_last` newest and `keep_best` best."""

    def __init__(
        self,
        folder: Path,
        every_epochs: int = 1,
        every_steps: int = 0,
        keep_last: int = 2,
        keep_best: int = 1,
        monitor: str = "val_loss",
        mode: str = "auto",
        on_exception: bool = True,
        extra: dict[str, Any] | None = None,
        writer: bool = True,
    ) -> None:
        self.folder = Path(folder)
        self.every_epochs, self.every_steps = every_epochs, every_steps
        self.keep_last, self.keep_best = keep_last, keep_best
        self.monitor, self.mode = monitor, resolve_mode(monitor, mode)
        self.on_exception_save = on_exception
        self.extra = extra or {}
        # In a group of ranks every rank takes part in a save (the state is gathered) and rank 0,
        # the writer, writes it; `last_saved` tells a reporter what was saved at which step.
        self.last_saved: Saved | None = None
        self.writer = writer
        self.index = CheckpointIndex(self.folder)
        self.writes = BackgroundWrites()

    def on_batch_end(self, loop: EpochLoop) -> None:
        if self.every_steps and loop.state.step % self.every_steps == 0:
            self.save(loop, metric=None)

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        state = loop.state
        due = self.every_epochs and state.epoch % self.every_epochs == 0
        if due or state.should_stop or state.epoch == loop.epochs:
            self.save(loop, metric=metrics.get(self.monitor))

    def on_train_end(self, loop: EpochLoop) -> None:
        if loop.state.interrupted and not self._saved_now(loop):
            self.save(loop, metric=None)
        self.writes.close()  # what follows (export, a report to Ray, the process's exit) reads the files

    def on_exception(self, loop: EpochLoop, exc: BaseException) -> None:
        if not self.on_exception_save or loop.state.failed or self._saved_now(loop):
            return
        try:
            self.save(loop, metric=None)
            self.writes.close()
            log.warning("saved a checkpoint at step %d after %s", loop.state.step, type(exc).__name__)
        except Exception as save_error:  # the original exception matters more than this one
            log.error("could not save a checkpoint after the exception: %s", save_error)

    def _saved_now(self, loop: EpochLoop) -> bool:
        now = (loop.state.epoch, loop.state.step)
        if self.last_saved is None:
            entries = self.index.entries
            return bool(entries) and (entries[-1].epoch, entries[-1].step) == now
        return (self.last_saved.epoch, self.last_saved.step) == now

    def save(self, loop: EpochLoop, metric: float | None) -> None:
        """Serialize the loop's state (every rank: gathering it is collective) and have the writer write it."""
        state = loop.state
        name = checkpoint_name(state.epoch, state.step, loop.backend.checkpoint_suffix)
        path = self.folder / name if self.writer else None
        payload = {**loop.checkpoint_payload(), **self.extra}
        self.last_saved = Saved(state.epoch, state.step, path)
        if path is None:
            return
        # Serialized here, on the loop's thread: the next step changes the weights, optimizer and
        # callback state in place. The writer is left only the disk (which releases the GIL): a
        # writer that pickled held the GIL against the loop's own Python between the steps.
        data = loop.backend.checkpoint_bytes(payload)
        entry = Entry(name, state.epoch, state.step, metric)
        self.writes.submit(lambda: self._write(data, entry))

    def wait(self) -> None:
        """Until the last checkpoint asked for is on disk and in the index."""
        self.writes.wait()

    def _write(self, data: bytes, entry: Entry) -> None:
        """Write the file, record it in the index, then apply retention (on the writer thread)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / entry.file, data)
        name = entry.file
        entries = [e for e in self.index.entries if e.file != name]
        self.index.entries = entries + [entry]
        keep = {e.file for e in self.index.entries[-self.keep_last :]}
        keep |= {e.file for e in self.index.best(self.keep_best, self.mode)}
        dropped = [e for e in self.index.entries if e.file not in keep]
        self.index.entries = [e for e in self.index.entries if e.file in keep]
        self.index.write()
        for old in dropped:
            (self.folder / old.file).unlink(missing_ok=True)
