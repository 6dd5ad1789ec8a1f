"""A finished run's exported model, loaded without its training data: for predict and evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from rayfit.backends import exported_model, load_predictor
from rayfit.config import ExperimentConfig, load_experiment, validate
from rayfit.data import DataInfo
from rayfit.errors import CheckpointError, ConfigError
from rayfit.paths import resolve_paths
from rayfit.run_folder import RunFolder


def resolve_run(run: str | Path, storage: str = "runs") -> Path:
    """A run given as a folder, as a name under the default storage folder, or as the experiment
    file that trained it."""
    trained_by = experiment_run_dir(Path(run))
    for candidate in (Path(run), Path(storage) / str(run), *trained_by):
        if exported_model(candidate / "model") is not None:
            return candidate
    if trained_by:
        raise CheckpointError(f"{run}: its run {trained_by[0]} has no exported model; train it: rayfit train {run}")
    raise CheckpointError(
        f"{run}: no finished run there (expected {Path(run) / 'model' / 'model.pt'} or model.keras)"
    )


def experiment_run_dir(path: Path) -> list[Path]:
    """[the run folder an experiment file trains into] (a flat-format file's is beside it), or []
    when `path` is not an experiment file."""
    if path.suffix.lower() not in (".yaml", ".yml", ".json") or not path.is_file():
        return []
    return [RunFolder.for_config(resolve_paths(load_experiment(path))).path]


def read_model_folder(run_dir: Path) -> tuple[ExperimentConfig, DataInfo]:
    """The resolved config and the data encoding saved with a run's model."""
    folder = Path(run_dir) / "model"
    config = validate(yaml.safe_load((folder / "config.yaml").read_text()), source=str(folder / "config.yaml"))
    return config, DataInfo.from_dict(json.loads((folder / "data_info.json").read_text()))


class SavedModel:
    """The exported model of a run, rebuilt from model/config.yaml by the run's backend."""

    def __init__(self, run_dir: Path) -> None:
        self.config, self.info = read_model_folder(run_dir)
        self.outputs = load_predictor(self.config, self.info, Path(run_dir) / "model")

    def predict_frame(self, frame: pd.DataFrame, source: str) -> list:
        """Predictions in the target's own terms (class labels or values) for raw input rows."""
        out = self.outputs(self.info.transform(frame, source).astype(np.float32))
        raw: np.ndarray = out.argmax(1) if self.info.task != "regression" else out[:, 0]
        return self.info.decode(raw)

    def predict_table(self, frame: pd.DataFrame, source: str, probabilities: bool = False) -> pd.DataFrame:
        """The prediction column (predicted_<target>) and, with `probabilities`, one prob_<label>
        column per class, from one pass of the model over the raw input rows."""
        out = self.outputs(self.info.transform(frame, source).astype(np.float32))
        table = pd.DataFrame({f"predicted_{self.info.target}": self.info.decode(out)}, index=frame.index)
        if probabilities and self.info.task == "regression":
            raise ConfigError(f"--probabilities: run predicts a number ({self.info.target!r}, regression), not classes")
        if probabilities:
            from rayfit.metrics_report import probabilities as softmax

            columns = [f"prob_{label}" for label in self.info.classes]
            table[columns] = softmax(out)
        return table
