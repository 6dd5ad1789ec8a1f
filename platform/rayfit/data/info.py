"""DataInfo: what was learned from the training split, saved with a run to encode new rows the same
way at prediction time and to turn model outputs back into labels."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from rayfit.data.columns import first_missing, missing_message, prepare_features
from rayfit.errors import DataError


@dataclass
class DataInfo:
    """Column layout, vocabularies, fill values and scaling fitted on the training split."""

    task: str  # "binary" | "multiclass" | "regression"
    features: list[str]  # input columns, before encoding
    target: str
    classes: list  # original labels, index = class id; [] for regression
    input_names: list[str]  # encoded columns, e.g. "city=Paris"
    mean: list[float]  # per encoded column; zeros when not standardising
    std: list[float]  # per encoded column; ones when not standardising
    target_mean: float = 0.0  # regression only
    target_std: float = 1.0  # regression only
    vocab: dict[str, list[str]] = field(default_factory=dict)  # one-hot categories per column
    image_shape: list[int] | None = None
    fill: dict[str, float] = field(default_factory=dict)  # train means used by missing="mean"
    missing: str = "error"  # the data.missing policy, applied again by transform()
    fingerprint: dict[str, str] = field(default_factory=dict)  # of the rows and split (data.fingerprint)

    @property
    def n_inputs(self) -> int:
        return len(self.input_names)

    @property
    def n_outputs(self) -> int:
        return 1 if self.task == "regression" else len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy, to store next to a model."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataInfo:
        """Rebuild from to_dict() output; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def transform(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        """Encode new rows for prediction as the training rows were: float32 (rows, n_inputs).

        Unknown categories become all-zero one-hot blocks; missing values follow the saved policy,
        except that rows cannot be dropped here, so 'drop' raises like 'error'.
        """
        x = prepare_features(frame, self.features, self.vocab, source)
        if self.missing != "mean":
            found = first_missing({name: x[name] for name in x.columns})
            if found:
                advice = (
                    "fill them first (data.missing is 'drop', but prediction cannot drop rows)"
                    if self.missing == "drop"
                    else "fill them first, or train with data.missing set to mean"
                )
                raise DataError(missing_message(*found, source, advice))
        return self.scale(self.encode(x))

    def encode(self, x: pd.DataFrame) -> np.ndarray:
        """One-hot and mean-fill a checked frame from prepare_features; float64, not scaled."""
        blocks = []
        for name in self.features:
            col = x[name]
            if name in self.vocab:
                codes = pd.Index(self.vocab[name]).get_indexer(col)  # -1: unknown or missing
                block = np.zeros((len(col), len(self.vocab[name])))
                hit = np.flatnonzero(codes >= 0)
                block[hit, codes[hit]] = 1.0
            else:
                block = col.to_numpy(dtype="float64", na_value=np.nan)[:, None]
                if name in self.fill:
                    block = np.where(np.isnan(block), self.fill[name], block)
            blocks.append(block)
        return np.hstack(blocks) if blocks else np.zeros((len(x), 0))

    def scale(self, raw: np.ndarray) -> np.ndarray:
        """Apply the saved standardisation to encoded columns; float32."""
        return ((raw - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def decode(self, outputs: np.ndarray) -> list:
        """Model outputs to original values: class ids (or per-class scores, argmax) -> labels;
        regression outputs -> unstandardised floats."""
        out = np.asarray(outputs)
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if self.task == "regression":
            return (out.astype("float64") * self.target_std + self.target_mean).tolist()
        ids = out.argmax(axis=-1) if out.ndim == 2 else out.astype("int64")
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.classes)):
            bad = int(ids.min() if ids.min() < 0 else ids.max())
            raise DataError(
                f"class id {bad} is out of range for {len(self.classes)} classes of {self.target!r}"
            )
        return [self.classes[i] for i in ids.tolist()]
