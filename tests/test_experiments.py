"""The shipped experiment files train to the accuracy they promise, and the flat seed format
(experiments/seed_format.json + experiments/make_seed_data.py) loads and trains from any folder.

Real training through the CLI (torch on CPU); MLflow is off except for the seed-format run.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from rayfit.backends import MODEL_FILES, exported_model
from rayfit.cli import main
from rayfit.config import load_experiment

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"


def train(capsys: pytest.CaptureFixture[str], experiment: Path, *overrides: str) -> dict:
    """`rayfit train EXPERIMENT --local --set ...` (in-process); the JSON summary it prints at the end."""
    args = ["train", str(experiment), "--local", "--json"]
    for item in overrides:
        args += ["--set", item]
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def seed_data_module():
    spec = importlib.util.spec_from_file_location("make_seed_data", EXPERIMENTS / "make_seed_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("experiment", "least", "backend"),
    [("digits_mlp.yaml", 0.97, "torch"), ("breast_cancer_mlp.yaml", 0.95, "torch"),
     ("digits_cnn.yaml", 0.97, "torch"), ("digits_mlp.yaml", 0.97, "tensorflow")],
)
def test_shipped_experiment_reaches_its_accuracy(
    workdir: Path, capsys: pytest.CaptureFixture[str], experiment: str, least: float, backend: str
) -> None:
    summary = train(capsys, EXPERIMENTS / experiment, "tracking.enabled=false", f"backend={backend}")
    assert summary["test_accuracy"] >= least, summary
    run_dir = Path(summary["run_dir"])
    assert run_dir == workdir / "runs" / Path(experiment).stem
    assert exported_model(run_dir / "model") == run_dir / "model" / MODEL_FILES[backend]


def test_seed_data_script_writes_a_deterministic_csv(tmp_path: Path) -> None:
    module = seed_data_module()
    first = module.write_seed_data(tmp_path / "a" / "train.csv")
    second = module.write_seed_data(tmp_path / "b" / "train.csv")
    assert first.read_bytes() == second.read_bytes()
    frame = pd.read_csv(first)
    features = [f"feature{i}" for i in range(1, 31)]
    assert list(frame.columns) == [*features, "target"]
    assert len(frame) == 569 and set(frame["target"]) == {0, 1}
    assert not frame.isna().any().any()
    assert module.feature_columns() == features


def test_seed_format_json_loads_into_the_nested_schema(workdir: Path) -> None:
    cfg = load_experiment(EXPERIMENTS / "seed_format.json")  # from another folder: cwd is workdir
    assert cfg.name == "deep_learning_model"
    assert cfg.data.source == str(EXPERIMENTS / "data" / "train.csv")
    assert Path(cfg.data.source).is_absolute()
    assert cfg.data.features == [f"feature{i}" for i in range(1, 31)]
    assert cfg.data.features == seed_data_module().feature_columns()
    assert cfg.data.target == "target"
    assert cfg.optimizer.lr == 0.001
    assert cfg.model.type == "mlp"
    assert cfg.model.hidden_units == [128, 64, 32]
    assert cfg.model.dropout == 0.2
    assert cfg.early_stopping.enabled and cfg.early_stopping.patience == 10
    assert cfg.schedule.name == "step"
    assert cfg.trainer.epochs == 100
    assert cfg.trainer.batch_size == 32
    assert cfg.tracking.storage == str(EXPERIMENTS / "models" / "deep_learning_model")


def test_seed_format_trains_next_to_its_file_from_any_folder(
    workdir: Path, capsys: pytest.CaptureFixture[str], mlflow_uri: str
) -> None:
    project = workdir / "project"
    project.mkdir()
    shutil.copy(EXPERIMENTS / "seed_format.json", project / "seed_format.json")
    seed_data_module().write_seed_data(project / "data" / "train.csv")
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()

    # relative path to the JSON, run from a folder that is neither the JSON's nor the data's
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(elsewhere)
        summary = train(capsys, Path("../project/seed_format.json"), f"tracking.uri={mlflow_uri}")

    run_dir = project / "models" / "deep_learning_model" / "deep_learning_model"
    assert Path(summary["run_dir"]) == run_dir
    assert (run_dir / "model" / "model.pt").is_file()
    assert not (elsewhere / "models").exists() and not (elsewhere / "runs").exists()
    assert summary["test_accuracy"] >= 0.93, summary
    status = json.loads((run_dir / "run.json").read_text())
    assert status["status"] == "finished"
    run = mlflow.MlflowClient(mlflow_uri).get_run(status["mlflow_run_id"])
    assert run.data.metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert run.data.params["data.source"] == str(project / "data" / "train.csv")
    assert run.data.params["schedule.name"] == "step"
