"""The MLflow callback hands each epoch to the tracking process from a thread of its own: in order,
all of them in the store once the run is closed, and an error raised to the run, not lost."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from rayfit.callbacks.tracking import MlflowTracking
from rayfit.config import load_experiment
from tests.conftest import write_experiment


def opened(tmp_path, mlflow_uri) -> tuple[MlflowTracking, SimpleNamespace]:
    cfg = load_experiment(write_experiment(tmp_path, tracking={"enabled": True, "uri": mlflow_uri}))
    tracking = MlflowTracking(mlflow_uri)
    tracking.open(cfg, tmp_path / "runs" / "tiny")
    loop = SimpleNamespace(state=SimpleNamespace(epoch=0, history=[]))
    tracking.on_train_begin(loop)
    return tracking, loop


def end_epoch(tracking: MlflowTracking, loop: SimpleNamespace, loss: float) -> None:
    loop.state.epoch += 1
    tracking.on_epoch_end(loop, {"epoch": float(loop.state.epoch), "val_loss": loss})


@pytest.mark.slow  # a tracking process of its own: 6 s, kept out of the fast tier
def test_epochs_reach_the_store_in_order_and_an_epoch_not_taken_fails_the_run_at_its_end(tmp_path, mlflow_uri):
    tracking, loop = opened(tmp_path, mlflow_uri)
    try:
        for epoch in range(1, 31):
            end_epoch(tracking, loop, 1.0 / epoch)
        tracking._call("flush")  # after every epoch handed over: MLflow wrote them all
        points = MlflowClient(mlflow_uri).get_metric_history(tracking.run_id, "val_loss")
        assert sorted((m.step, m.value) for m in points) == [(epoch, 1.0 / epoch) for epoch in range(1, 31)]

        os.kill(tracking.process._process.pid, signal.SIGKILL)
        tracking.process._process.wait()
        end_epoch(tracking, loop, 0.5)  # the loop does not wait for the call: it goes on
        with pytest.raises((EOFError, OSError)):
            tracking._end("FINISHED")  # but the run does not end as if MLflow had that epoch
    finally:
        tracking.close()
