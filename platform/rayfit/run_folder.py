"""A run's folder: resolved config, status, checkpoints, history, exported model and plots.

The folder is the unit of resume: re-running the same experiment name finds it, checks the
config is the same, and goes on from its latest checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import yaml

from rayfit.callbacks.checkpoint import CheckpointIndex
from rayfit.config import ExperimentConfig, flatten, read_mapping
from rayfit.errors import CheckpointError, first_line
from rayfit.paths import localized, portable
from rayfit.safe_yaml import load_json


# Where outputs and logs go, how many workers train and how progress shows do not change the
# experiment: a moved project folder, a bigger cluster or `--local` may resume a run. (With another
# number of workers a mid-epoch resume is no longer bitwise exact; an epoch-boundary one is.)
FREE_ON_RESUME = ("tracking.", "scaling.", "trainer.progress")


class RunFinished(Exception):
    """The run folder holds a finished run with this config; nothing to do."""


class RunFolder:
    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        self.checkpoints = self.path / "checkpoints"
        self.model_dir = self.path / "model"
        self.status_file = self.path / "run.json"
        self.config_file = self.path / "config.yaml"

    @classmethod
    def for_config(cls, cfg: ExperimentConfig) -> "RunFolder":
        return cls(Path(cfg.tracking.storage) / cfg.name)

    def exists(self) -> bool:
        return self.status_file.is_file()

    def status(self) -> dict[str, Any]:
        try:
            status = load_json(self.status_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.status_file}: unreadable run status ({first_line(exc)})") from exc
        if not isinstance(status, dict):
            raise CheckpointError(f"{self.status_file}: unreadable run status (expected a JSON object)")
        return status

    def saved_config(self) -> dict[str, Any]:
        """The run's config as saved, its data paths made absolute again (see paths.portable)."""
        if not self.config_file.is_file():
            raise CheckpointError(f"{self.config_file}: missing; the run folder is incomplete")
        return localized(read_mapping(self.config_file), self.path)

    def has_checkpoint(self) -> bool:
        return bool(CheckpointIndex(self.checkpoints).entries)

    def check_resumable(self, cfg: ExperimentConfig) -> None:
        """Refuse to mix two different experiments in one folder; say so if the run is finished.
        A folder with no checkpoint yet (a run that failed or was killed early) is taken over."""
        if not self.exists():
            return
        status = self.status()
        if not self.has_checkpoint() and status.get("status") != "finished":
            return
        saved = flatten(self.saved_config())
        wanted = cfg.flat()
        changed = sorted(
            k for k in saved.keys() | wanted.keys()
            if saved.get(k) != wanted.get(k) and not k.startswith(FREE_ON_RESUME)
        )
        if changed:
            key = changed[0]
            raise CheckpointError(
                f"{self.path} holds run {cfg.name!r} with {key}={saved.get(key)!r}, not "
                f"{wanted.get(key)!r}; choose another run name (--set name=...) to train anew"
            )
        if status.get("status") in ("finished", "cancelled"):
            ended = "already finished" if status["status"] == "finished" else "was cancelled"
            raise RunFinished(
                f"run {cfg.name!r} {ended} ({status.get('stop_reason')}); its outputs are in "
                f"{self.path}. Nothing was changed; use --set name=... to train anew"
            )

    def start(self, cfg: ExperimentConfig, **fields: Any) -> None:
        """Create the folder (or mark a resumed one running) with the resolved config; a folder
        without a checkpoint starts over with this config."""
        self.path.mkdir(parents=True, exist_ok=True)
        resumed = self.exists() and self.has_checkpoint()
        if not resumed:
            write_atomic(self.config_file, yaml.safe_dump(portable(cfg, self.path), sort_keys=False))
        status = self.status() if resumed else {"name": cfg.name, "created": time.time()}
        self.update(status | {"status": "running"} | fields)

    def update(self, status: dict[str, Any]) -> None:
        write_atomic(self.status_file, json.dumps(status, indent=1, default=str))

    def finish(self, **fields: Any) -> None:
        self.update(self.status() | {"status": "finished", "finished": time.time()} | fields)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold `NAME.lock` beside the run folder while a run trains: a second process training the
        same run is refused at once, and the OS releases the lock when this process ends or dies.
        The file (and a storage folder made for it) is removed on release: a refusal leaves nothing."""
        made_storage = not self.path.parent.exists()
        lock_path = self.path.with_name(self.path.name + ".lock")
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # O_NOFOLLOW: a planted symlink must not make us create a file elsewhere
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except FileNotFoundError:
                continue  # a run releasing its lock removed the empty storage folder just now
            except OSError as exc:
                raise CheckpointError(f"{lock_path}: cannot create the run's lock file ({exc.strerror})") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise CheckpointError(
                    f"run {self.path.name!r} is being trained by another process ({lock_path} is locked); "
                    "wait for it to end, or choose another run name (--set name=...)"
                ) from None
            # The holder before us removes the file on release: if it did so between our open and
            # our lock, we hold a removed file, so take the one that is there now.
            with suppress(FileNotFoundError):
                if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                    break
            os.close(fd)
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)
            os.close(fd)
            if made_storage:
                with suppress(OSError):  # rmdir removes only an empty folder: nothing else was written
                    self.path.parent.rmdir()


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file or none: through a temporary file, removed again if the write fails or
    is interrupted (Ctrl-C)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
