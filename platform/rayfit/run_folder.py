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
from rayfit.safe_yaml import load_json, load_yaml


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
            return load_json(self.status_file.read_text())
        except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            raise CheckpointError(f"{self.status_file}: unreadable run status ({exc})") from exc

    def saved_config(self) -> dict[str, Any]:
        try:
            return load_yaml(self.config_file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise CheckpointError(f"{self.config_file}: unreadable run config ({exc})") from exc

    def check_resumable(self, cfg: ExperimentConfig) -> None:
        """Refuse to mix two different experiments in one folder; say so if the run is finished."""
        if not self.exists():
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
        status = self.status()
        if status.get("status") == "finished":
            raise RunFinished(
                f"run {cfg.name!r} already finished ({status.get('stop_reason')}); its outputs are in "
                f"{self.path}. Nothing was changed; use --set name=... to train anew"
            )

    def start(self, cfg: ExperimentConfig, **fields: Any) -> None:
        """Create the folder (or mark a resumed one running) with the resolved config."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.config_file.exists():
            write_atomic(self.config_file, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        status = self.status() if self.exists() else {"name": cfg.name, "created": time.time()}
        self.update(status | {"status": "running"} | fields)

    def update(self, status: dict[str, Any]) -> None:
        write_atomic(self.status_file, json.dumps(status, indent=1, default=str))

    def finish(self, **fields: Any) -> None:
        self.update(self.status() | {"status": "finished", "finished": time.time()} | fields)


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
