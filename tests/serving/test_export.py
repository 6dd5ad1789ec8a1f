"""`rayfit export`: ONNX, TorchScript and SavedModel files that take the encoded columns unscaled
and answer as the run's framework model and as `rayfit predict` do; encoding.json beside them;
bad requests refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_digits

from rayfit.cli import main
from rayfit.data.columns import prepare_features
from rayfit.inference import SavedModel, read_model_folder
from tests.conftest import run_commands


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits run per backend and a torch regression run (diabetes), trained once."""
    return run_commands(
        tmp_path_factory.mktemp("export"), [["train", f"{name}.yaml"] for name in ("torch", "tf", "reg")],
        torch={"backend": "torch"}, tf={"backend": "tensorflow"},
        reg={"backend": "torch", "data": {"source": "sklearn:diabetes"}},
    )


def raw_rows(name: str) -> pd.DataFrame:
    """Feature columns as a user has them (unscaled), for the run `name`."""
    loader = load_diabetes if name == "reg" else load_digits
    return loader(as_frame=True).frame.drop(columns="target").iloc[:50]


def encoded(run_dir: Path, rows: pd.DataFrame) -> np.ndarray:
    """The exported graph's input: encoded columns, not standardized."""
    _, info = read_model_folder(run_dir)
    return info.encode(prepare_features(rows, info.features, info.vocab, "rows")).astype(np.float32)


def exported(runs: Path, name: str, fmt: str) -> Path:
    output = runs / f"{name}-{fmt}"
    assert main(["export", str(runs / "runs" / name), "--format", fmt, "--output", str(output)]) == 0
    return output


def framework_outputs(run_dir: Path, x: np.ndarray) -> np.ndarray:
    """The same graph run by the framework itself, from the run's model folder."""
    cfg, info = read_model_folder(run_dir)
    if cfg.backend == "torch":
        import torch

        from rayfit.backends.torch_backend import load_model
        from rayfit.backends.torch_export import RawInputModel

        with torch.no_grad():
            return RawInputModel(load_model(cfg, info, run_dir / "model"), info)(torch.from_numpy(x)).numpy()
    from rayfit.backends.tf_backend import load_model
    from rayfit.backends.tf_export import raw_input_function

    return raw_input_function(load_model(cfg, info, run_dir / "model"), info)(x).numpy()


def run_export(folder: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    """Outputs of an exported file, loaded by its own runtime."""
    if fmt == "onnx":
        return onnxruntime.InferenceSession(str(folder / "model.onnx")).run(["outputs"], {"inputs": x})[0]
    if fmt == "torchscript":
        import torch

        return torch.jit.load(str(folder / "model.torchscript.pt"))(torch.from_numpy(x)).detach().numpy()
    import tensorflow as tf

    loaded = tf.saved_model.load(str(folder))  # held: its functions need its variables alive
    return loaded.serve(x).numpy()


@pytest.mark.parametrize("name, fmt", [("torch", "onnx"), ("torch", "torchscript"), ("tf", "onnx"),
                                       ("tf", "savedmodel"), ("reg", "onnx")])
def test_export_answers_as_the_framework_and_predict(runs: Path, name: str, fmt: str) -> None:
    run_dir, rows = runs / "runs" / name, raw_rows(name)
    folder = exported(runs, name, fmt)
    x = encoded(run_dir, rows)
    out = run_export(folder, fmt, x)

    np.testing.assert_allclose(out, framework_outputs(run_dir, x), atol=1e-5, rtol=1e-5)
    model = SavedModel(run_dir)
    if name == "reg":  # values in the target's units: standardization and its inverse are inside
        np.testing.assert_allclose(out[:, 0], model.predict_frame(rows, "rows"), rtol=1e-5)
    else:  # logits: predict's (standardized in float64), and so its labels
        np.testing.assert_allclose(out, model.outputs(model.info.transform(rows, "rows")), atol=1e-4)
        assert model.info.decode(out) == model.predict_frame(rows, "rows")


def test_encoding_is_written_next_to_the_model(runs: Path) -> None:
    assert main(["export", str(runs / "runs" / "torch"), "--format", "onnx"]) == 0
    folder = runs / "runs" / "torch" / "exports" / "onnx"  # the default place
    encoding = json.loads((folder / "encoding.json").read_text())
    _, info = read_model_folder(runs / "runs" / "torch")
    assert (folder / encoding["model_file"]).is_file()
    assert encoding["features"] == info.features and encoding["inputs"] == info.input_names
    assert encoding["classes"] == list(range(10)) and encoding["outputs"] == "logits per class"


@pytest.mark.parametrize("args, expected", [
    (["no-such-run", "--format", "onnx"], "no-such-run: no finished run there"),
    (["runs/tf", "--format", "torchscript"], "--format torchscript: not for a tensorflow run"),
    (["runs/torch", "--format", "savedmodel"], "--format savedmodel: not for a torch run"),
    (["runs/torch", "--format", "onnx", "--output", "taken"], "--output taken: it exists"),
    (["runs/torch", "--format", "onnx", "--output", "nowhere/out"], "--output nowhere/out: the folder nowhere does not exist"),
])
def test_bad_requests_are_one_line(runs: Path, args: list[str], expected: str, capsys, monkeypatch) -> None:
    monkeypatch.chdir(runs)
    (runs / "taken").mkdir(exist_ok=True)
    (runs / "taken" / "mine.txt").write_text("kept")
    assert main(["export", *args]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {expected}") and error.count("\n") == 1, error
    assert (runs / "taken" / "mine.txt").read_text() == "kept" and sorted((runs / "taken").iterdir()) == [
        runs / "taken" / "mine.txt"]
    assert not list(runs.glob(".*.tmp-*"))  # no staging folder left behind
