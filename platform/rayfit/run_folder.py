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


EXTENDABLE = "trainer.epochs"  # the one setting --extend changes


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

    def history(self) -> list[dict[str, Any]]:
        """The per-epoch rows history.json holds ([] before the first epoch)."""
        history_file = self.path / "history.json"
        return json.loads(history_file.read_text()) if history_file.is_file() else []

    def has_checkpoint(self) -> bool:
        return bool(CheckpointIndex(self.checkpoints).entries)

    def check_resumable(self, cfg: ExperimentConfig, extend: bool = False) -> None:
        """Refuse to mix two different experiments in one folder; say so if the run is finished.
        A folder with no checkpoint yet (a run that failed or was killed early) is taken over.
        With `extend`, a run that reached its last epoch may go on to a larger trainer.epochs,
        with nothing else changed."""
        if not self.exists():
            if extend:
                raise CheckpointError(f"--extend: no run {cfg.name!r} in {self.path.parent}; train it first")
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
        if extend:
            self._check_extension(cfg, saved, [k for k in changed if k != EXTENDABLE])
            return
        if changed:
            key = changed[0]
            extend_hint = " (or only trainer.epochs with --extend)" if changed == [EXTENDABLE] else ""
            raise CheckpointError(
                f"{self.path} holds run {cfg.name!r} with {key}={saved.get(key)!r}, not "
                f"{wanted.get(key)!r}; choose another run name (--name NAME, or --new for "
                f"{cfg.name}-2){extend_hint} to train anew"
            )
        if status.get("status") in ("finished", "cancelled"):
            ended = "already finished" if status["status"] == "finished" else "was cancelled"
            raise RunFinished(
                f"run {cfg.name!r} {ended} ({status.get('stop_reason')}); its outputs are in "
                f"{self.path}. Nothing was changed; to train it longer add --set trainer.epochs=N --extend, "
                "to train anew add --new"
            )

    def _check_extension(self, cfg: ExperimentConfig, saved: dict[str, Any], changed: list[str]) -> None:
        """--extend: only trainer.epochs grows, and the run reached its last epoch (an early-stopped
        run's checkpoint says stop, so it would not train on)."""
        if changed:
            key = changed[0]
            raise CheckpointError(
                f"--extend changes only trainer.epochs, but {key} would change from {saved.get(key)!r} "
                f"to {cfg.flat().get(key)!r}; use --new to train a new run with it"
            )
        status = self.status()
        reason = str(status.get("stop_reason") or "")
        if status.get("status") != "finished":
            raise CheckpointError(
                f"--extend: run {cfg.name!r} is not finished ({status.get('status')}); "
                "run the command without --extend and with its trainer.epochs to resume it first"
            )
        if not reason.startswith("reached the last epoch"):
            raise CheckpointError(
                f"--extend: run {cfg.name!r} stopped early ({reason}); only a run that reached its last "
                "epoch can be extended; use --new to train a new run"
            )
        old = saved.get(EXTENDABLE)
        if not isinstance(old, int) or cfg.trainer.epochs <= old:
            raise CheckpointError(
                f"--extend: trainer.epochs={cfg.trainer.epochs} must be more than the {old} epochs "
                f"run {cfg.name!r} trained"
            )

    def write_config(self, cfg: ExperimentConfig) -> None:
        """The run's resolved config; --extend rewrites it, so later resumes compare against it."""
        write_atomic(self.config_file, yaml.safe_dump(portable(cfg, self.path), sort_keys=False))

    def start(self, cfg: ExperimentConfig, rewrite_config: bool = False, **fields: Any) -> None:
        """Create the folder (or mark a resumed one running) with the resolved config; a folder
        without a checkpoint starts over with this config, an extended run (`rewrite_config`)
        becomes the longer one."""
        self.path.mkdir(parents=True, exist_ok=True)
        resumed = self.exists() and self.has_checkpoint()
        if not resumed or rewrite_config:
            self.write_config(cfg)
        status = self.status() if resumed else {"name": cfg.name, "created": time.time()}
        self.update(status | {"status": "running"} | fields)

    def update(self, status: dict[str, Any]) -> None:
        write_atomic(self.status_file, json.dumps(status, indent=1, default=str))

    def finish(self, **fields: Any) -> None:
        self.update(self.status() | {"status": "finished", "finished": time.time()} | fields)

    @contextmanager
    def lock(self, wait_s: float = 0.0) -> Iterator[None]:
        """Hold `NAME.lock` beside the run folder while a run trains: a second process training the
        same run is refused (after `wait_s`), and the OS releases the lock when this process ends or
        dies. The file (and a storage folder made for it) is removed on release: a refusal leaves nothing."""
        made_storage = not self.path.parent.exists()
        lock_path = self.path.with_name(self.path.name + ".lock")
        deadline = time.monotonic() + wait_s
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
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
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


def fresh_name(storage: Path, name: str) -> str:
    """`name` if no run folder has it, else the first free NAME-2, NAME-3, ... (for --new)."""
    number = 1
    candidate = name
    while (Path(storage) / candidate).exists():
        number += 1
        candidate = f"{name}-{number}"
    return candidate


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
