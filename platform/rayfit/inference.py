"""A finished run's exported model, loaded without its training data: for predict and evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from rayfit.backends.torch_backend import batched_outputs, load_checked
from rayfit.config import ExperimentConfig, validate
from rayfit.data import DataInfo
from rayfit.errors import CheckpointError
from rayfit.models.torch_models import build_model


def resolve_run(run: str | Path, storage: str = "runs") -> Path:
    """A run given as a folder, or as a name under the default storage folder."""
    for candidate in (Path(run), Path(storage) / str(run)):
        if (candidate / "model" / "model.pt").is_file():
            return candidate
    raise CheckpointError(f"{run}: no finished run there (expected {Path(run) / 'model' / 'model.pt'})")


class SavedModel:
    """Rebuilds the model from model/config.yaml and loads model/model.pt with weights_only=True."""

    def __init__(self, run_dir: Path) -> None:
        folder = Path(run_dir) / "model"
        self.config: ExperimentConfig = validate(
            yaml.safe_load((folder / "config.yaml").read_text()), source=str(folder / "config.yaml")
        )
        self.info = DataInfo.from_dict(json.loads((folder / "data_info.json").read_text()))
        self.weights = load_checked(folder / "model.pt")
        self.model = build_model(
            self.config.model, self.info.n_inputs, self.info.n_outputs, self.info.image_shape
        )
        self.model.load_state_dict(self.weights)
        self.model.eval()

    def predict_frame(self, frame: pd.DataFrame, source: str) -> list:
        """Predictions in the target's own terms (class labels or values) for raw input rows."""
        x = torch.as_tensor(self.info.transform(frame, source), dtype=torch.float32)
        out = batched_outputs(self.model, x, self.config.trainer.eval_batch_size)
        classes = self.info.task != "regression"
        raw: np.ndarray = (out.argmax(1) if classes else out.squeeze(-1)).numpy()
        return self.info.decode(raw)
