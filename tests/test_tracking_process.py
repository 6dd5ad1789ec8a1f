"""MLflow runs in a process of its own: the run's process never imports MLflow, the tracking
process ends with the run (closed, or its parent killed), and errors come back to the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from mlflow.tracking import MlflowClient

from rayfit.config import load_experiment
from rayfit.errors import ConfigError
from rayfit.tracking_process import TrackingProcess
from tests.conftest import write_experiment


def test_a_recorder_logs_into_its_run_and_the_process_ends_on_close(tmp_path, mlflow_uri):
    cfg = load_experiment(write_experiment(tmp_path, tracking={"enabled": True, "uri": mlflow_uri}))
    process = TrackingProcess(mlflow_uri, 0.0)
    recorder = process.recorder()
    pid = process._process.pid
    assert psutil.Process(pid).nice() == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)  # below the run
    run_id = recorder.open(cfg.model_dump(mode="json"), str(tmp_path / "runs" / "tiny"))
    assert recorder.open(cfg.model_dump(mode="json"), str(tmp_path / "runs" / "tiny")) == run_id  # found again
    recorder.start([])
    reader = MlflowClient(mlflow_uri)
    assert reader.get_metric_history(run_id, "val_loss") == []  # the reader's store is open before the write
    recorder.log_epoch({"val_loss": 1.0, "epoch": 1.0}, 1, True)  # wait_for_epochs: in the store on return,
    assert [(m.step, m.value) for m in reader.get_metric_history(run_id, "val_loss")] == [(1, 1.0)]  # not a second later
    for epoch in range(2, 21):  # buffered, and written by MLflow on a pool of threads
        recorder.log_epoch({"val_loss": 1.0 / epoch, "epoch": float(epoch)}, epoch)
    recorder.end("KILLED")
    history = MlflowClient(mlflow_uri).get_metric_history(run_id, "val_loss")
    # every epoch in the store when the run is closed
    assert sorted((m.step, m.value) for m in history) == [(epoch, 1.0 / epoch) for epoch in range(1, 21)]
    process.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert MlflowClient(mlflow_uri).get_run(run_id).info.status == "KILLED"


@pytest.mark.slow  # a tracking process of its own: 5 s, kept out of the fast tier
def test_a_resumed_run_logs_the_epochs_of_its_history_that_the_store_lacks(tmp_path, mlflow_uri):
    """A run killed before MLflow wrote its last epochs resumes from a checkpoint whose history holds them."""
    cfg = load_experiment(write_experiment(tmp_path, tracking={"enabled": True, "uri": mlflow_uri}))
    history = [{"epoch": float(epoch), "val_loss": 1.0 / epoch} for epoch in (1, 2, 3)]
    process = TrackingProcess(mlflow_uri, 0.0)
    try:
        recorder = process.recorder()
        run_id = recorder.open(cfg.model_dump(mode="json"), str(tmp_path / "runs" / "tiny"))
        recorder.start([])
        recorder.log_epoch(history[0], 1)  # the store got epoch 1; the kill lost 2 and 3
        recorder.end("KILLED")
        recorder.start(history)  # resumed after epoch 3
        recorder.end("FINISHED")
    finally:
        process.close()
    points = MlflowClient(mlflow_uri).get_metric_history(run_id, "val_loss")
    assert sorted((m.step, m.value) for m in points) == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]  # each once


def test_an_error_in_the_tracking_process_is_raised_in_the_run(tmp_path):
    cfg = load_experiment(write_experiment(tmp_path, tracking={"enabled": True, "uri": "nosuch://x"}))
    process = TrackingProcess("nosuch://x", 0.0)
    try:
        with pytest.raises(ConfigError, match="tracking.uri: MLflow does not support 'nosuch://x'"):
            process.recorder().open(cfg.model_dump(mode="json"), str(tmp_path / "runs" / "tiny"))
    finally:
        process.close()


SCRIPT = textwrap.dedent("""
    # no __main__ guard, as in a notebook or a quick script: nothing may run this file again
    import sys
    from rayfit import Trainer
    result = Trainer("tiny.yaml", progress=False).fit()
    print("mlflow imported here:", any(m == "mlflow" or m.startswith("mlflow.") for m in sys.modules))
    print("status:", result.status, result.mlflow_run_id)
""")


@pytest.mark.slow
def test_a_script_trains_with_mlflow_without_importing_it(tmp_path, mlflow_uri):
    write_experiment(tmp_path, trainer={"epochs": 2}, tracking={"enabled": True, "uri": mlflow_uri})
    (tmp_path / "train.py").write_text(SCRIPT)
    out = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "mlflow imported here: False" in out.stdout
    run_id = out.stdout.split("status: finished ")[1].split()[0]
    client = MlflowClient(mlflow_uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1, 2]


@pytest.mark.slow
def test_the_tracking_process_ends_when_the_run_is_killed(tmp_path, mlflow_uri):
    write_experiment(tmp_path, trainer={"epochs": 500}, tracking={"enabled": True, "uri": mlflow_uri})
    run = subprocess.Popen([sys.executable, "-m", "rayfit.cli", "train", "tiny.yaml"], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "runs" / "tiny" / "history.csv").exists():  # training: MLflow's run is open
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.2)
        children = [p for p in psutil.Process(run.pid).children() if "rayfit.tracking_process" in p.cmdline()]
        assert len(children) == 1
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [] and len(gone) == 1
    finally:
        if run.poll() is None:
            run.kill()
