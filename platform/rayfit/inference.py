"""A finished run's exported model, loaded without its training data: for predict and evaluate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rayfit.backends import MODEL_FILES, exported_model, load_predictor
from rayfit.config import ExperimentConfig, load_experiment, read_mapping, validate
from rayfit.data import DataInfo
from rayfit.errors import CheckpointError, ConfigError, first_line
from rayfit.imports import refuse_saved_code
from rayfit.paths import localized, resolve_paths
from rayfit.run_folder import RunFolder
from rayfit.safe_yaml import load_json


def resolve_run(run: str | Path, storage: str = "runs") -> Path:
    """A run given as a folder, as a name under the default storage folder, or as the experiment
    file that trained it."""
    trained_by = experiment_run_dir(Path(run))
    for candidate in (Path(run), Path(storage) / str(run), *trained_by):
        if exported_model(candidate / "model") is not None or (candidate / "model" / "config.yaml").is_file():
            return candidate  # a config.yaml that cannot be read is reported by read_model_folder
        if any((candidate / "model" / name).is_file() for name in MODEL_FILES.values()):
            raise CheckpointError(f"{candidate / 'model' / 'config.yaml'}: missing; the model folder is incomplete")
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


def read_model_folder(run_dir: Path, trust_code: bool = False) -> tuple[ExperimentConfig, DataInfo]:
    """The resolved config and the data encoding saved with a run's model; a config that names
    code to import is refused unless `trust_code` (the folder may come from someone else)."""
    folder = Path(run_dir) / "model"
    config_file, info_file = folder / "config.yaml", folder / "data_info.json"
    config = validate(localized(read_mapping(config_file), run_dir), source=str(config_file))
    if not trust_code:
        refuse_saved_code(config, str(config_file))
    try:
        info = DataInfo.from_dict(load_json(info_file.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{info_file}: not the data encoding rayfit saved ({first_line(exc)})") from exc
    return config, info


class SavedModel:
    """The exported model of a run, rebuilt from model/config.yaml by the run's backend (a user
    model's code is imported only with `trust_code`)."""

    def __init__(self, run_dir: Path, trust_code: bool = False) -> None:
        self.config, self.info = read_model_folder(run_dir, trust_code)
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
