"""The MLflow model a run logs takes raw rows and answers what `rayfit predict` answers: loaded
in this process, and served by a real `mlflow models serve` over HTTP on both backends (a
TensorFlow run with a categorical column)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import rayfit
from rayfit.cli import main
from rayfit.trainer import Trainer
from tests.conftest import free_port, write_experiment


def people(n: int, seed: int) -> pd.DataFrame:
    """Rows with a categorical column (city) and numbers whose scales differ by 1000x; the label
    depends on all three, so every column matters to the answer."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.integers(18, 90, n),
        "income": rng.normal(40_000, 15_000, n).round(2),
        "city": rng.choice(["Paris", "Lyon", "Nice"], n),
    })
    score = (frame["age"] - 50) / 20 + (frame["income"] - 40_000) / 15_000 + (frame["city"] == "Nice") * 1.5
    frame["buys"] = np.where(score > 0.5, "yes", "no")
    return frame


def trained(folder: Path, uri: str, name: str, **sections) -> tuple[Path, str]:
    """The folder of a run trained in `folder` with MLflow on, and its logged model's URI."""
    tracking = {"enabled": True, "uri": uri, "experiment": f"served-{name}"}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        result = Trainer(write_experiment(folder, name, tracking=tracking, **sections)).fit()
    client = MlflowClient(uri)
    run = client.get_run(result.mlflow_run_id)
    logged = client.search_logged_models([run.info.experiment_id])
    mlflow.set_tracking_uri(uri)  # where a models:/ URI is looked up (the run logged from its tracking process)
    return (folder / result.run_dir).resolve(), logged[0].model_uri


@pytest.fixture(scope="module")
def categorical_run(tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str) -> tuple[Path, str]:
    """A TensorFlow run on people.csv (trained once for the module)."""
    folder = tmp_path_factory.mktemp("people")
    people(300, 0).to_csv(folder / "people.csv", index=False)
    return trained(folder, mlflow_uri, "people", backend="tensorflow",
                   data={"source": str(folder / "people.csv"), "target": "buys", "categorical": ["city"]},
                   model={"hidden_units": [16]}, trainer={"epochs": 3, "batch_size": 32})


def predicted(run_dir: Path, rows_csv: Path, probabilities: bool = False) -> pd.DataFrame:
    """What `rayfit predict` writes for the rows (its added columns only)."""
    out = rows_csv.with_name(f"predicted-{rows_csv.stem}-{probabilities}.csv")
    assert main(["predict", str(run_dir), "--input", str(rows_csv), "--output", str(out)]
                + (["--probabilities"] if probabilities else [])) == 0
    table = pd.read_csv(out)
    return table.drop(columns=pd.read_csv(rows_csv).columns)


def test_the_logged_model_takes_raw_rows_and_returns_labels(categorical_run, workdir: Path) -> None:
    run_dir, model_uri = categorical_run
    rows = people(40, 1).drop(columns="buys")
    rows.to_csv(workdir / "rows.csv", index=False)
    model = mlflow.pyfunc.load_model(model_uri)

    answers = model.predict(rows, params={"probabilities": True})
    expected = predicted(run_dir, workdir / "rows.csv", probabilities=True)
    assert answers["predicted_buys"].tolist() == expected["predicted_buys"].tolist()
    assert set(answers["predicted_buys"]) <= {"yes", "no"}
    np.testing.assert_allclose(answers[["prob_no", "prob_yes"]], expected[["prob_no", "prob_yes"]], atol=1e-6)
    assert list(model.predict(rows).columns) == ["predicted_buys"]  # probabilities only when asked

    assert [p.name for p in model.metadata.get_params_schema().params] == ["probabilities"]
    example = model.metadata.load_input_example(model_uri)  # raw columns, as a user has them
    assert list(example.columns) == ["age", "income", "city"] and example["city"][0] in {"Paris", "Lyon", "Nice"}
    assert model.predict(example)["predicted_buys"][0] in {"yes", "no"}


def test_bad_rows_are_refused_in_one_line(categorical_run) -> None:
    _, model_uri = categorical_run
    model = mlflow.pyfunc.load_model(model_uri)
    rows = people(5, 2).drop(columns="buys")
    with pytest.raises(MlflowException, match="income"):  # a missing column is named
        model.predict(rows.drop(columns="income"))
    with pytest.raises(MlflowException, match="age"):  # so is a column that is not numeric
        model.predict(rows.assign(age=["young"] * 5))


# ------------------------------------------------------------------------ mlflow models serve


class Served:
    """`mlflow models serve --env-manager local` of a logged model, on 127.0.0.1."""

    def __init__(self, model_uri: str, tracking_uri: str, log: Path) -> None:
        self.port = free_port()
        platform = str(Path(rayfit.__file__).parents[1])  # this rayfit, as the server imports it
        scripts = str(Path(sys.executable).parent)  # MLflow starts `uvicorn` by name
        env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri,
                   PATH=os.pathsep.join([scripts, os.environ.get("PATH", "")]),
                   PYTHONPATH=os.pathsep.join([platform, os.environ.get("PYTHONPATH", "")]))
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
             "-p", str(self.port), "-h", "127.0.0.1", "--workers", "1"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/ping", timeout=2)
                return
            except OSError:
                assert self.process.poll() is None, "mlflow models serve exited; see its log"
                assert time.monotonic() < deadline, "mlflow models serve did not start"
                time.sleep(0.5)

    def post(self, body: bytes, content_type: str) -> tuple[int, dict]:
        request = urllib.request.Request(f"{self.url}/invocations", data=body,
                                         headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.mark.slow  # two `mlflow models serve` processes
def test_served_models_answer_as_predict(categorical_run, workdir: Path, mlflow_uri: str) -> None:
    people_run, people_uri = categorical_run
    digits_run, digits_uri = trained(workdir, mlflow_uri, "digits", backend="torch")
    servers = [Served(people_uri, mlflow_uri, workdir / "people-serve.log"),
               Served(digits_uri, mlflow_uri, workdir / "digits-serve.log")]
    try:
        for server in servers:  # both start at once: their start is most of this test's time
            server.wait()
        people_server, digits_server = servers

        rows = people(50, 3).drop(columns="buys")
        rows.to_csv(workdir / "people-rows.csv", index=False)
        status, body = people_server.post((workdir / "people-rows.csv").read_bytes(), "text/csv")
        assert status == 200, body
        expected = predicted(people_run, workdir / "people-rows.csv", probabilities=True)
        assert [r["predicted_buys"] for r in body["predictions"]] == expected["predicted_buys"].tolist()

        split = json.loads(rows.to_json(orient="split", index=False))
        status, body = people_server.post(
            json.dumps({"dataframe_split": split, "params": {"probabilities": True}}).encode(), "application/json"
        )
        assert status == 200, body
        np.testing.assert_allclose([[r["prob_no"], r["prob_yes"]] for r in body["predictions"]],
                                   expected[["prob_no", "prob_yes"]].to_numpy(), atol=1e-6)

        status, body = people_server.post(rows.drop(columns="city").to_csv(index=False).encode(), "text/csv")
        assert status == 400 and "city" in body["message"], body

        from sklearn.datasets import load_digits

        digits = load_digits(as_frame=True).frame.drop(columns="target").iloc[:80]
        digits.to_csv(workdir / "digits-rows.csv", index=False)
        status, body = digits_server.post((workdir / "digits-rows.csv").read_bytes(), "text/csv")
        assert status == 200, body
        expected = predicted(digits_run, workdir / "digits-rows.csv")
        assert [r["predicted_target"] for r in body["predictions"]] == expected["predicted_target"].tolist()
    finally:
        for server in servers:
            server.stop()
