"""A run's folder: resolved config, status, checkpoints, history, exported model and plots.

The folder is the unit of resume: re-running the same experiment name finds it, checks the
config is the same, and goes on from its latest checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from rayfit.config import ExperimentConfig, flatten
from rayfit.errors import CheckpointError


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
            return json.loads(self.status_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{self.status_file}: unreadable run status ({exc})") from exc

    def saved_config(self) -> dict[str, Any]:
        try:
            return yaml.safe_load(self.config_file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise CheckpointError(f"{self.config_file}: unreadable run config ({exc})") from exc

    def check_resumable(self, cfg: ExperimentConfig, extend: bool = False) -> None:
        """Refuse to mix two different experiments in one folder; say so if the run is finished.

        With `extend`, a run that reached its last epoch may go on to a larger trainer.epochs,
        with nothing else changed."""
        if not self.exists():
            if extend:
                raise CheckpointError(f"--extend: no run {cfg.name!r} in {self.path.parent}; train it first")
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
        status = self.status()
        if status.get("status") == "finished":
            raise RunFinished(
                f"run {cfg.name!r} already finished ({status.get('stop_reason')}); its outputs are in "
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
        write_atomic(self.config_file, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    def start(self, cfg: ExperimentConfig, **fields: Any) -> None:
        """Create the folder (or mark a resumed one running) with the resolved config."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.config_file.exists():
            self.write_config(cfg)
        status = self.status() if self.exists() else {"name": cfg.name, "created": time.time()}
        self.update(status | {"status": "running"} | fields)

    def update(self, status: dict[str, Any]) -> None:
        write_atomic(self.status_file, json.dumps(status, indent=1, default=str))

    def finish(self, **fields: Any) -> None:
        self.update(self.status() | {"status": "finished", "finished": time.time()} | fields)


def fresh_name(storage: Path, name: str) -> str:
    """`name` if no run folder has it, else the first free NAME-2, NAME-3, ... (for --new)."""
    number = 1
    candidate = name
    while (Path(storage) / candidate).exists():
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
