"""Jobs on a real Ray head (`ray start --head`): `ray job submit` of `rayfit train` produces an
MLflow run; `rayfit submit` streams a job's logs and returns its outcome as the exit code."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow  # real processes and Ray clusters: not in the fast tier

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
# The head and its jobs run this environment's python; clients send the token that Ray 2.60's
# default token authentication keeps in ~/.ray.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
       "RAY_AUTH_MODE": "token"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    # Processes of a Ray that another module shut down may still hold ports for a moment.
    subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)
    port, dashboard = free_port(), free_port()
    subprocess.run(
        [RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--node-ip-address=127.0.0.1",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         "--disable-usage-stats"],
        check=True, capture_output=True, timeout=180, env=ENV,
    )
    yield f"http://127.0.0.1:{dashboard}"
    subprocess.run([RAY, "stop"], capture_output=True, timeout=120, env=ENV)


def experiment(folder: Path, **sections) -> Path:
    config = {
        "name": "job",
        "data": {"source": "sklearn:digits"},
        "model": {"hidden_units": [32]},
        "trainer": {"epochs": 2, "batch_size": 64},
        "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}", "storage": str(folder / "runs"),
                     "experiment": "jobs"},
        "scaling": {"num_workers": 1},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_ray_job_submit_trains_and_records_an_mlflow_run(ray_head, tmp_path):
    done = subprocess.run(
        [RAY, "job", "submit", "--address", ray_head, "--working-dir", str(REPO),
         "--runtime-env", str(REPO / "cluster" / "runtime_env.yaml"), "--",
         "python", "-m", "rayfit.cli", "train", str(experiment(tmp_path))],
        capture_output=True, text=True, timeout=600, env=ENV,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("jobs").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [p.step for p in client.get_metric_history(runs[0].info.run_id, "val_loss")] == [1, 2]
    assert runs[0].data.metrics["test_accuracy"] > 0.5
    assert runs[0].data.params["scaling.num_workers"] == "1"


# `rayfit submit` finds the token as Ray's own clients do, without RAY_AUTH_MODE set by hand.
CLIENT_ENV = {k: v for k, v in ENV.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}


def test_rayfit_submit_returns_the_job_outcome(ray_head, tmp_path):
    # a job whose experiment is invalid fails inside the cluster: its log line comes back here
    work = tmp_path / "project"
    shutil.copytree(REPO / "cluster", work / "cluster")
    shutil.copytree(REPO / "platform", work / "platform", ignore=shutil.ignore_patterns("__pycache__"))
    experiment(work, optimizer={"lr": -1})
    done = subprocess.run(
        [sys.executable, "-m", "rayfit.cli", "submit", "job.yaml", "--address", ray_head,
         "--working-dir", str(work)],
        capture_output=True, text=True, timeout=300, env=CLIENT_ENV,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: job.yaml: optimizer.lr: Input should be greater than 0" in done.stdout
    assert "FAILED" in done.stdout


def test_rayfit_submit_without_a_token_says_where_it_looks(ray_head, tmp_path):
    (tmp_path / "job.yaml").write_text("name: job\ndata: {source: sklearn:digits}\n")
    done = subprocess.run(
        [sys.executable, "-m", "rayfit.cli", "submit", "job.yaml", "--address", ray_head],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**CLIENT_ENV, "HOME": str(tmp_path)},  # no ~/.ray/auth_token there
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: --address {ray_head}: the cluster uses token authentication")
    assert "RAY_AUTH_TOKEN" in line and "~/.ray/auth_token" in line
