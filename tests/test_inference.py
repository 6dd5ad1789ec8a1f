"""`rayfit evaluate` and `rayfit predict` on a finished run, on both backends: the same numbers
training produced.

Predictions are checked three ways: the CLI's CSV, SavedModel.predict_frame, and a forward pass
written here in NumPy from the last checkpoint's weights and the scaler in model/data_info.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from rayfit.backends import build_backend
from rayfit.callbacks.checkpoint import CheckpointIndex
from rayfit.cli import main
from rayfit.data import load_dataset
from rayfit.errors import ConfigError
from rayfit.inference import SavedModel
from rayfit.trainer import FitResult, Trainer
from tests.conftest import checkpoint_arrays, write_experiment


@pytest.fixture
def finished(workdir: Path, backend: str) -> FitResult:
    """A 3-epoch digits MLP (no early stopping: the exported model is the last epoch's)."""
    return Trainer(write_experiment(workdir, backend=backend)).fit()


def raw_rows() -> pd.DataFrame:
    """Digits rows as a user has them: original column names, raw 0..16 pixel values; the first
    60 real images, then 40 random images on which the model's answer is its own, not a label."""
    frame = load_digits(as_frame=True).frame
    features = frame.drop(columns="target")
    noise = np.random.default_rng(7).integers(0, 17, size=(40, features.shape[1]))
    return pd.concat(
        [features.iloc[:60], pd.DataFrame(noise.astype(float), columns=features.columns)],
        ignore_index=True,
    )


def numpy_predictions(run_dir: Path, rows: pd.DataFrame) -> list:
    """Class labels from the last checkpoint's weights, computed without rayfit's model code:
    standardise with data_info.json, then Linear -> ReLU -> ... -> Linear, argmax."""
    info = json.loads((run_dir / "model" / "data_info.json").read_text())
    latest = CheckpointIndex(run_dir / "checkpoints").latest
    floats = [a.astype(np.float64) for a in checkpoint_arrays(latest) if a.dtype.kind == "f"]  # not TF's seed
    layers = list(zip(floats[::2], floats[1::2]))  # (weight, bias) per Linear / Dense layer
    x = (rows[info["features"]].to_numpy(np.float64) - np.array(info["mean"])) / np.array(info["std"])
    for i, (w, b) in enumerate(layers):
        x = x @ (w.T if latest.suffix == ".pt" else w) + b  # torch's weight is (out, in), a kernel (in, out)
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)  # dropout is off at inference
    return [info["classes"][i] for i in x.argmax(axis=1)]


def test_evaluate_prints_the_test_metrics_fit_returned(
    finished: FitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    assert {"test_loss", "test_accuracy", "test_f1_macro", "test_top3_accuracy"} <= set(finished.test_metrics)
    for run in ("tiny", str(finished.run_dir)):  # a name under ./runs, or the folder itself
        capsys.readouterr()
        assert main(["evaluate", run, "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed.keys() == finished.test_metrics.keys() | {"labels", "confusion_matrix"}
        assert printed["test_accuracy"] == finished.test_metrics["test_accuracy"]
        assert printed["test_loss"] == pytest.approx(finished.test_metrics["test_loss"], rel=1e-6)


def test_predict_writes_the_models_own_argmax(
    finished: FitResult, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = raw_rows()
    rows.to_csv(workdir / "rows.csv", index=False)

    assert main(["predict", "tiny", "--input", "rows.csv", "--output", "predictions.csv"]) == 0
    assert "wrote 100 predictions" in capsys.readouterr().out
    written = pd.read_csv(workdir / "predictions.csv")
    assert list(written.columns) == [*rows.columns, "predicted_target"]
    np.testing.assert_array_equal(written[rows.columns].to_numpy(), rows.to_numpy())
    predicted = written["predicted_target"].tolist()

    expected = numpy_predictions(finished.run_dir, rows)
    assert predicted == expected
    assert predicted == SavedModel(finished.run_dir).predict_frame(rows, "rows.csv")
    # the check has teeth: the random images get varied answers, and the real ones mostly right
    assert len(set(predicted[60:])) > 1
    labels = load_digits().target[:60]
    assert np.mean(np.array(predicted[:60]) == labels) > 0.8


def test_exported_model_predicts_what_the_model_at_the_end_of_training_did(finished: FitResult) -> None:
    """The round trip: outputs of the exported model (model.pt or model.keras, loaded as predict
    loads it) equal, bitwise, those of the backend holding the last checkpoint's state."""
    saved = SavedModel(finished.run_dir)
    data = load_dataset(saved.config.data, saved.config.trainer.seed)
    backend = build_backend(saved.config, data)
    latest = CheckpointIndex(finished.run_dir / "checkpoints").latest
    backend.load_state_dict(backend.load_file(latest)["backend"])
    at_end = np.asarray(backend.outputs(data.x_test))
    exported = saved.outputs(data.x_test)
    assert exported.shape == (270, 10)
    np.testing.assert_array_equal(exported, at_end)


def test_predict_refuses_to_overwrite(finished: FitResult, workdir: Path) -> None:
    raw_rows().iloc[:5].to_csv(workdir / "rows.csv", index=False)
    (workdir / "predictions.csv").write_text("keep me\n")
    assert main(["predict", "tiny", "--input", "rows.csv", "--output", "predictions.csv"]) == 2
    assert (workdir / "predictions.csv").read_text() == "keep me\n"


USER_MODEL = """
from torch import nn

def build(n_inputs, n_outputs, width):
    return nn.Sequential(nn.Linear(n_inputs, width), nn.ReLU(), nn.Linear(width, n_outputs))
"""


def test_a_saved_user_model_is_imported_only_with_trust_code(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "user_net.py").write_text(USER_MODEL)
    monkeypatch.syspath_prepend(str(workdir))
    write_experiment(workdir, model={"type": "user_net:build", "kwargs": {"width": 8}}, trainer={"epochs": 1})
    assert main(["train", "tiny.yaml"]) == 0
    raw_rows().iloc[:5].to_csv("rows.csv", index=False)
    predict = ["predict", "tiny", "--input", "rows.csv", "--output", "pred.csv"]
    capsys.readouterr()

    assert main(predict) == 2
    assert main(["evaluate", "tiny"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all("'user_net:build'" in e and "--trust-code" in e for e in errors), errors
    assert not (workdir / "pred.csv").exists()
    with pytest.raises(ConfigError, match="model.type is the import path 'user_net:build'"):
        SavedModel(workdir / "runs" / "tiny")

    assert main([*predict, "--trust-code"]) == 0
    assert main(["evaluate", "tiny", "--trust-code"]) == 0
    trusted = SavedModel(workdir / "runs" / "tiny", trust_code=True)
    assert pd.read_csv("pred.csv")["predicted_target"].tolist() == trusted.predict_frame(raw_rows().iloc[:5], "rows")
