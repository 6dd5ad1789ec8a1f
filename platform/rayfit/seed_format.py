"""The flat experiment format (as the service receives it), mapped onto the nested schema."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from rayfit.errors import ConfigError

SEED_KEYS = {"algorithm_type", "train_data_path", "algorithm_params"}


def is_seed_format(raw: dict[str, Any]) -> bool:
    return bool(SEED_KEYS & raw.keys())


def from_seed_format(flat: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    """Map the flat request format (as the service receives it) onto the nested schema.

    Relative data paths and output_path are taken from the file's folder, and the MLflow store is
    mlflow.db there: the file runs from anywhere and writes next to itself, as a YAML experiment
    writes runs/ and mlflow.db in its working folder. `rayfit evaluate FILE` finds its run.
    """
    flat = dict(flat)
    params = dict(flat.pop("algorithm_params", None) or {})
    algorithm = flat.pop("algorithm_type", "deep_learning")
    where = f"{path}: " if path else ""
    if algorithm != "deep_learning":
        raise ConfigError(f"{where}algorithm_type: expected 'deep_learning', got {algorithm!r}")

    def data_path(value: str | None) -> str | None:
        if not isinstance(value, str) or path is None or Path(value).is_absolute() or ":" in value:
            return value  # sklearn:NAME, absolute, or not text (validation reports that)
        return str((path.parent / value).resolve())

    def folder_path(value: Any) -> Any:
        if not isinstance(value, str) or path is None or Path(value).is_absolute():
            return value
        return str((path.parent / value).resolve())

    nested: dict[str, Any] = {
        "data": {
            "source": data_path(flat.pop("train_data_path", None)),
            "features": flat.pop("feature_columns", None),
            "target": flat.pop("target_column", None),
        },
        "model": {},
        "optimizer": {},
        "trainer": {},
        "schedule": {},
        "early_stopping": {},
        "tracking": {},
    }
    for key, section in (("val_data_path", "val_source"), ("test_data_path", "test_source")):
        if key in flat:
            nested["data"][section] = data_path(flat.pop(key))
    if "name" in flat:
        nested["name"] = _safe_name(str(flat.pop("name")))
    moves = {
        "epochs": ("trainer", "epochs"),
        "batch_size": ("trainer", "batch_size"),
        "learning_rate": ("optimizer", "lr"),
        "optimizer": ("optimizer", "name"),
        "output_path": ("tracking", "storage"),
        "seed": ("trainer", "seed"),
    }
    _move(flat, moves, nested)
    if "storage" in nested["tracking"]:
        nested["tracking"]["storage"] = folder_path(nested["tracking"]["storage"])
    if path is not None:  # the MLflow store lands beside the outputs too, not in the working folder
        nested["tracking"]["uri"] = "sqlite:///" + str((path.parent / "mlflow.db").resolve())
    param_moves = {
        "model_type": ("model", "type"),
        "hidden_units": ("model", "hidden_units"),
        "dropout_rate": ("model", "dropout"),
        "activation": ("model", "activation"),
        "learning_rate_scheduler": ("schedule", "name"),
    }
    _move(params, param_moves, nested)
    if "early_stopping_patience" in params:
        nested["early_stopping"] = {"enabled": True, "patience": params.pop("early_stopping_patience")}
    known = {"": [*SEED_KEYS, "feature_columns", "target_column", "val_data_path", "test_data_path",
                  "name", *moves],
             "algorithm_params.": [*param_moves, "early_stopping_patience"]}
    leftovers = [("", k) for k in sorted(flat)] + [("algorithm_params.", k) for k in sorted(params)]
    if leftovers:
        prefix, key = leftovers[0]
        match = difflib.get_close_matches(key, known[prefix], n=1)
        hint = f"; did you mean {prefix}{match[0]}?" if match else ""
        raise ConfigError(f"{where}unknown key {prefix}{key} in the flat experiment format{hint}")
    return {k: v for k, v in nested.items() if v != {}} | {"data": nested["data"]}


def _safe_name(name: str) -> str:
    """Turn a free-text name ('deep learning model') into a run-folder name."""
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name.strip()) or "run"


def _move(source: dict[str, Any], table: dict[str, tuple[str, str]], nested: dict[str, Any]) -> None:
    """Pop each flat key of `table` found in `source` into nested[section][field]."""
    for key, (section, field) in table.items():
        if key in source:
            nested[section][field] = source.pop(key)
