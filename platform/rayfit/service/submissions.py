"""A submitted experiment made safe to run: server-owned settings refused, paths confined to the
server's folders, import paths refused unless the server allows them, then validated as any
experiment file is. Every refusal is a ConfigError naming the field (the API answers 422)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rayfit.config import ExperimentConfig, validate
from rayfit.errors import ConfigError
from rayfit.imports import is_import_path
from rayfit.paths import DATA_PATHS
from rayfit.run_folder import RunFolder
from rayfit.seed_format import from_seed_format
from rayfit.service.security import confine
from rayfit.service.settings import ServiceSettings

SERVER_OWNED = (("tracking", "uri"), ("scaling", "address"), ("scaling", "storage_path"))
CODE_FIELDS = (("model", "type"), ("schedule", "name"))


@dataclass
class Submission:
    task_id: str
    config: ExperimentConfig

    @property
    def run_dir(self) -> Path:
        return RunFolder.for_config(self.config).path


def from_seed(flat: dict[str, Any], settings: ServiceSettings) -> Submission:
    """The flat request format (experiments/seed_format.json)."""
    return prepare(from_seed_format(flat), settings)


def prepare(raw: dict[str, Any], settings: ServiceSettings) -> Submission:
    """A native experiment (the YAML's content as JSON) checked against the server's rules."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for section, key in SERVER_OWNED:
        if isinstance(raw.get(section), dict) and raw[section].get(key) is not None:
            raise ConfigError(f"{section}.{key}: set by the server; leave it out of the request")
    if not settings.allow_import_paths:
        for section, key in CODE_FIELDS:
            value = raw.get(section, {}).get(key) if isinstance(raw.get(section), dict) else None
            if isinstance(value, str) and is_import_path(value):
                raise ConfigError(f"{section}.{key}: import paths ('module:function') are refused by this "
                                  "server (it runs no code named by a request); use a built-in name")
    data = raw.get("data")
    if isinstance(data, dict):
        for key in DATA_PATHS:
            if isinstance(data.get(key), str):
                data[key] = confine(data[key], settings.data_roots, f"data.{key}", must_exist=True)
    tracking = raw.setdefault("tracking", {}) if isinstance(raw.get("tracking", {}), dict) else None
    if tracking is not None:
        storage = tracking.get("storage", "runs")
        if isinstance(storage, str):
            tracking["storage"] = confine(storage, [settings.output_root], "tracking.storage")
        tracking["uri"] = settings.tracking_uri
    scaling = raw.setdefault("scaling", {}) if isinstance(raw.get("scaling", {}), dict) else None
    if scaling is not None:
        scaling.setdefault("num_workers", 0)  # in the run's own Ray actor unless workers are asked for
    task_id = uuid.uuid4().hex
    name = raw.get("name", "run")
    if isinstance(name, str):  # one folder per task: two submissions of one experiment never share it
        raw["name"] = f"{name}-{task_id[:8]}"
    return Submission(task_id, validate(raw, source="body"))
