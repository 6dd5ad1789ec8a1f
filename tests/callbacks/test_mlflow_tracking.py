"""MLflow records a run: params, one point per epoch per metric, test metrics, artifacts and a
pyfunc model that loads back and takes raw rows; also against a real `mlflow server`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from mlflow.tracking import MlflowClient

from rayfit import Trainer
from rayfit.callbacks.mlflow_tracking import create_sqlite_store, open_mlflow_run
from rayfit.cli import main
from rayfit.config import validate
from rayfit.inference import SavedModel

from tests.conftest import free_port, write_experiment

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate",
                 "epoch_time_s", "samples_per_s", "peak_memory_mb")


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_three_epoch_run_is_recorded(make_experiment, mlflow_uri, backend):
    experiment = make_experiment(
        backend=backend,
        tracking={"enabled": True, "uri": mlflow_uri, "experiment": f"recorded-{backend}", "system_metrics_s": 0.2},
        trainer={"epochs": 3, "batch_size": 16},  # long enough for a few system-metric samples
    )
    result = Trainer(experiment).fit()
    client = MlflowClient(mlflow_uri)
    run = client.get_run(result.mlflow_run_id)

    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    assert run.data.params["optimizer.lr"] == "0.003"
    assert run.data.params["model.hidden_units"] == "[32]"
    for metric in EPOCH_METRICS:
        points = client.get_metric_history(run.info.run_id, metric)
        assert [p.step for p in points] == [1, 2, 3], metric
    val_loss = [p.value for p in client.get_metric_history(run.info.run_id, "val_loss")]
    assert val_loss == pytest.approx([row["val_loss"] for row in result.history])
    for name in ("test_accuracy", "test_f1_macro", "test_f1_weighted", "test_top3_accuracy", "test_log_loss"):
        assert run.data.metrics[name] == pytest.approx(result.test_metrics[name]), name

    assert client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    assert client.get_metric_history(run.info.run_id, "system/system_memory_usage_megabytes")

    files = artifact_paths(client, run.info.run_id)
    assert {"config/config.yaml", "history/history.csv", "plots/curves.png"} <= files
    assert any(f.startswith("checkpoints/best/ckpt-") for f in files)
    assert any(f.startswith("checkpoints/last/ckpt-") for f in files)

    # the logged model (a pyfunc) takes raw rows and answers what `rayfit predict` answers
    mlflow.set_tracking_uri(mlflow_uri)
    logged = client.search_logged_models([run.info.experiment_id])
    model = mlflow.pyfunc.load_model(logged[0].model_uri)
    rows = load_digits(as_frame=True).frame.drop(columns="target").iloc[:20]
    expected = SavedModel(result.run_dir).predict_table(rows, "rows", probabilities=True)
    pd.testing.assert_frame_equal(model.predict(rows, params={"probabilities": True}), expected)
    assert model.predict(rows)["predicted_target"].tolist() == expected["predicted_target"].tolist()


@pytest.fixture
def mlflow_server(tmp_path: Path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.mark.slow  # a real `mlflow server` process
def test_tracking_uri_takes_a_real_mlflow_server(make_experiment, mlflow_server):
    experiment = make_experiment(
        trainer={"epochs": 2}, tracking={"enabled": True, "uri": mlflow_server, "experiment": "served"}
    )
    result = Trainer(experiment).fit()
    client = MlflowClient(mlflow_server)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert [p.step for p in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    assert "history/history.csv" in artifact_paths(client, run.info.run_id)
    assert not Path("mlflow.db").exists()  # nothing went to the default local store
    assert np.isfinite(run.data.metrics["test_loss"])


@pytest.mark.slow  # a pause and a resume: two runs, each with its tracking process
def test_default_run_in_a_folder_with_an_apostrophe_resumes_into_its_mlflow_run(tmp_path, monkeypatch):
    """`rayfit train` with the default store in "Bob's project": paused after epoch 1, resumed,
    and both epochs land in one MLflow run (the run is found again by its folder)."""
    project = tmp_path / "Bob's project"
    project.mkdir()
    monkeypatch.chdir(project)
    write_experiment(project, "tiny", tracking={"enabled": True, "system_metrics_s": 0},
                     trainer={"epochs": 2, "progress": "none"})
    paused = Trainer("tiny.yaml")
    paused.register_progress_callback(lambda epoch, metrics: os.kill(os.getpid(), signal.SIGTERM))
    assert paused.fit().interrupted
    assert main(["train", "tiny.yaml"]) == 0

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("rayfit").experiment_id])
    assert len(runs) == 1
    assert runs[0].data.tags["rayfit.run_dir"] == str(project / "runs" / "tiny")
    assert [p.step for p in client.get_metric_history(runs[0].info.run_id, "val_loss")] == [1, 2]


def test_runs_are_found_by_their_exact_folder(tmp_path, mlflow_uri):
    """Quotes become LIKE wildcards in the search; the exact comparison keeps look-alikes apart."""
    cfg = validate({"name": "x", "data": {"source": "sklearn:iris"},
                    "tracking": {"uri": mlflow_uri, "experiment": "exact-folder"}})
    folders = [tmp_path / name for name in ("Bob's", "Bob_s", 'say "hi" it\'s', "back\\slash")]
    ids = [open_mlflow_run(cfg, folder) for folder in folders]
    assert len(set(ids)) == len(folders)
    assert [open_mlflow_run(cfg, folder) for folder in reversed(folders)] == ids[::-1]


def test_a_new_sqlite_store_is_created_at_mlflows_latest_schema(tmp_path, monkeypatch):
    from mlflow.store.db.utils import _get_latest_schema_revision

    monkeypatch.setenv("RAYFIT_CACHE", str(tmp_path / "cache"))
    project = tmp_path / "project"
    project.mkdir()
    for name in ("new.db", "second.db"):  # the second is a copy of the empty store built for the first
        path = project / name
        create_sqlite_store(f"sqlite:///{path}")
        with sqlite3.connect(path) as db:
            assert db.execute("select version_num from alembic_version").fetchall() == [
                (_get_latest_schema_revision(),)]  # MLflow will not migrate it again
        client = MlflowClient(f"sqlite:///{path}")
        run = client.create_run(client.create_experiment("e"))
        client.log_metric(run.info.run_id, "loss", 0.5, step=1)
        assert client.get_metric_history(run.info.run_id, "loss")[0].value == 0.5
        assert len(client.search_experiments()) == 2  # Default and e: nothing of the other store's
    assert sorted(p.name for p in project.iterdir()) == ["new.db", "second.db"]  # no temp file left
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"mlflow-{mlflow.__version__}-empty.db"]


def test_an_existing_store_is_left_as_it_is(tmp_path):
    path = tmp_path / "mlflow.db"
    path.write_bytes(b"not replaced")
    create_sqlite_store(f"sqlite:///{path}")
    assert path.read_bytes() == b"not replaced"
