"""A finished run's exported model, loaded without its training data: for predict and evaluate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rayfit.backends import MODEL_FILES, exported_model, load_predictor
from rayfit.config import ExperimentConfig, read_mapping, validate
from rayfit.data import DataInfo
from rayfit.errors import CheckpointError, first_line
from rayfit.imports import refuse_saved_code
from rayfit.paths import localized
from rayfit.safe_yaml import load_json


def resolve_run(run: str | Path, storage: str = "runs") -> Path:
    """A run given as a folder, or as a name under the default storage folder."""
    for candidate in (Path(run), Path(storage) / str(run)):
        if exported_model(candidate / "model") is not None or (candidate / "model" / "config.yaml").is_file():
            return candidate  # a config.yaml that cannot be read is reported by read_model_folder
        if any((candidate / "model" / name).is_file() for name in MODEL_FILES.values()):
            raise CheckpointError(f"{candidate / 'model' / 'config.yaml'}: missing; the model folder is incomplete")
    raise CheckpointError(
        f"{run}: no finished run there (expected {Path(run) / 'model' / 'model.pt'} or model.keras)"
    )


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
