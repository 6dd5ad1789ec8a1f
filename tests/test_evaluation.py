"""`rayfit evaluate`: scikit-learn's metrics of the exported model on the run's test split, checked
against numpy on the same model's outputs; a flat-format run is evaluated by its file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rayfit.cli import main
from rayfit.data import load_dataset
from rayfit.errors import DataError
from rayfit.evaluation import evaluate_run
from rayfit.inference import SavedModel

from tests.conftest import run_commands

TRAIN = {"epochs": 2, "progress": "none"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary run (breast cancer) and a regression run (diabetes), in-process, MLflow off."""
    return run_commands(
        tmp_path_factory.mktemp("evaluation"), [["train", "binary.yaml"], ["train", "regression.yaml"]],
        binary={"data": {"source": "sklearn:breast_cancer"}, "trainer": TRAIN},
        regression={"data": {"source": "sklearn:diabetes"}, "trainer": TRAIN},
    )


def test_split(run: Path) -> tuple[np.ndarray, np.ndarray, SavedModel]:
    model = SavedModel(run)
    data = load_dataset(model.config.data, model.config.trainer.seed)
    return model.outputs(data.x_test), data.y_test, model


test_split.__test__ = False  # a helper, not a test


def test_binary_metrics_match_the_counts_of_the_models_answers(project: Path) -> None:
    report = evaluate_run(project / "runs" / "binary")
    outputs, y, _ = test_split(project / "runs" / "binary")
    predicted = outputs.argmax(axis=1)
    tp, fp = int(((predicted == 1) & (y == 1)).sum()), int(((predicted == 1) & (y == 0)).sum())
    fn, tn = int(((predicted == 0) & (y == 1)).sum()), int(((predicted == 0) & (y == 0)).sum())
    m = report.metrics
    assert report.confusion_matrix == [[tn, fp], [fn, tp]]
    assert m["test_accuracy"] == pytest.approx((tp + tn) / len(y))
    assert m["test_precision"] == pytest.approx(tp / (tp + fp))
    assert m["test_recall"] == pytest.approx(tp / (tp + fn))
    assert m["test_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert 0.5 < m["test_roc_auc"] <= 1.0
    assert m["test_log_loss"] == pytest.approx(m["test_loss"], rel=1e-4)  # the loop's cross-entropy
    stored = json.loads((project / "runs" / "binary" / "run.json").read_text())["test_metrics"]
    assert stored.keys() == m.keys() and all(stored[k] == pytest.approx(m[k], rel=1e-5) for k in m)


def test_regression_metrics_are_in_the_targets_units(project: Path) -> None:
    report = evaluate_run("regression", storage=str(project / "runs"))
    outputs, y, model = test_split(project / "runs" / "regression")
    info = model.info
    truth = y * info.target_std + info.target_mean
    predicted = outputs[:, 0].astype(np.float64) * info.target_std + info.target_mean
    m = report.metrics
    assert set(m) == {"test_loss", "test_mae", "test_rmse", "test_r2"} and report.confusion_matrix is None
    assert m["test_mae"] == pytest.approx(np.abs(predicted - truth).mean(), rel=1e-5)
    assert m["test_rmse"] == pytest.approx(np.sqrt(((predicted - truth) ** 2).mean()), rel=1e-5)
    residual, total = ((predicted - truth) ** 2).sum(), ((truth - truth.mean()) ** 2).sum()
    assert m["test_r2"] == pytest.approx(1 - residual / total, rel=1e-4)
    assert truth.std() > 10  # diabetes progression: tens of units, so standardised values would differ


def test_predict_probabilities_are_refused_for_regression(project: Path, workdir: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "rows.csv").write_text("age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n" + ",".join(["0.01"] * 10) + "\n")
    run = str(project / "runs" / "regression")
    assert main(["predict", run, "--input", "rows.csv", "--output", "out.csv", "--probabilities"]) == 2
    assert capsys.readouterr().err == (
        "error: --probabilities: run predicts a number ('target', regression), not classes\n"
    )
    assert not (workdir / "out.csv").exists()


def test_a_run_without_a_test_split_is_one_line(workdir: Path) -> None:
    run_commands(workdir, [["train", "notest.yaml"]],
                 notest={"data": {"test_fraction": 0.0}, "trainer": {"epochs": 1, "progress": "none"}})
    with pytest.raises(DataError, match=r"sklearn:digits: the run has no test split \(data.test_fraction is 0\)"):
        evaluate_run("notest")


def test_a_flat_format_run_lands_beside_its_file_and_is_evaluated_by_it(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, elsewhere = workdir / "project", workdir / "elsewhere"
    (project / "data").mkdir(parents=True)
    elsewhere.mkdir()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    rows = [f"{a:.4f},{b:.4f},{c:.4f},{int(a + b > 0)}" for a, b, c in x]
    (project / "data" / "train.csv").write_text("f1,f2,f3,target\n" + "\n".join(rows) + "\n")
    (project / "request.json").write_text(json.dumps({
        "name": "deep learning model", "algorithm_type": "deep_learning", "epochs": 2, "batch_size": 16,
        "train_data_path": "data/train.csv", "target_column": "target", "output_path": "models/dl",
    }))
    monkeypatch.chdir(elsewhere)
    assert main(["train", "../project/request.json", "--local", "--set", "trainer.progress=none"]) == 0
    run = project / "models" / "dl" / "deep_learning_model"
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert (project / "mlflow.db").is_file() and sorted(p.name for p in elsewhere.iterdir()) == []
    capsys.readouterr()
    assert main(["evaluate", "../project/request.json", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test_accuracy"] == pytest.approx(json.loads((run / "run.json").read_text())["test_metrics"]["test_accuracy"])
    # the data hint names the file where the flat format looked: beside the JSON
    (project / "data" / "train.csv").unlink()
    assert main(["train", "../project/request.json", "--local", "--name", "again"]) == 2
    assert capsys.readouterr().err == f"error: data file {project / 'data' / 'train.csv'} not found\n"
