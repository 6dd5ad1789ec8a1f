"""Make a config's relative paths absolute, so it means the same thing in every process.

Ray Train workers start in their own folders (and on other nodes), so the driver resolves data
files, the output folder and a SQLite MLflow store against its working directory first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rayfit.config import ExperimentConfig

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def is_local_path(text: str) -> bool:
    """A plain path (not sklearn:NAME, not a URI like s3://, not C:\\ on Windows)."""
    return "://" not in text and not text.startswith("sklearn:")


def absolute(text: str | None) -> str | None:
    if text is None or not is_local_path(text):
        return text
    return str(Path(text).expanduser().resolve())


def absolute_tracking_uri(uri: str | None) -> str:
    """The MLflow store as an absolute URI: a relative sqlite:/// file or folder is made absolute."""
    uri = uri or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    return absolute(uri) or uri


def resolve_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config every process of the run uses: absolute paths, num_workers 'auto' decided here."""
    data = cfg.data.model_copy(
        update={key: absolute(getattr(cfg.data, key)) for key in ("source", "val_source", "test_source")}
    )
    tracking = cfg.tracking.model_copy(
        update={"storage": absolute(cfg.tracking.storage), "uri": absolute_tracking_uri(cfg.tracking.uri)}
    )
    scaling = cfg.scaling.resolved().model_copy(update={"storage_path": absolute(cfg.scaling.storage_path)})
    return cfg.model_copy(update={"data": data, "tracking": tracking, "scaling": scaling})


DATA_PATHS = ("source", "val_source", "test_source")


def portable(cfg: ExperimentConfig, run_dir: Path) -> dict[str, Any]:
    """The config as a run folder saves it: a data file inside the project (the folder that holds
    the storage folder) is written relative to the run folder, so a copied or moved project reads
    its own copy of the data; a file elsewhere stays absolute."""
    raw = cfg.model_dump(mode="json")
    project = Path(run_dir).resolve().parent.parent
    for key in DATA_PATHS:
        value = raw["data"][key]
        if value and is_local_path(value) and Path(value).is_absolute() and Path(value).is_relative_to(project):
            raw["data"][key] = os.path.relpath(value, Path(run_dir).resolve())
    return raw


def localized(raw: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A saved config (from `portable`) with its relative data paths made absolute again, against
    the run folder where it now lies."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return raw
    base = Path(run_dir).resolve()
    data = {
        key: (str((base / value).resolve()) if key in DATA_PATHS and isinstance(value, str)
              and is_local_path(value) and not Path(value).is_absolute() else value)
        for key, value in data.items()
    }
    return raw | {"data": data}
