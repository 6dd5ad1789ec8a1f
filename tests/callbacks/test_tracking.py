"""The MLflow callback hands each epoch to the tracking process from a thread of its own: in order,
and an epoch it could not hand over stops the run at the next epoch, or is a warning at the end."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import wait
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


def end_epoch(tracking: MlflowTracking, loop: SimpleNamespace, loss: object) -> None:
    loop.state.epoch += 1
    tracking.on_epoch_end(loop, {"epoch": float(loop.state.epoch), "val_loss": loss})


@pytest.mark.slow  # a tracking process of its own: 6 s, kept out of the fast tier
def test_epochs_reach_the_store_in_order_and_one_not_taken_stops_the_run_or_warns_at_its_end(
        tmp_path, mlflow_uri, caplog):
    tracking, loop = opened(tmp_path, mlflow_uri)
    caplog.set_level(logging.WARNING, logger="rayfit")
    store = MlflowClient(mlflow_uri)
    try:
        for epoch in range(1, 31):
            end_epoch(tracking, loop, 1.0 / epoch)
        tracking._settle()
        tracking.recorder.flush()  # MLflow's own buffer
        points = sorted(store.get_metric_history(tracking.run_id, "val_loss"), key=lambda m: m.step)
        assert [(m.step, m.value) for m in points] == [(epoch, 1.0 / epoch) for epoch in range(1, 31)]
        assert [m.timestamp for m in points] == sorted(m.timestamp for m in points)  # taken in order

        end_epoch(tracking, loop, threading.Lock())  # cannot be sent; the loop does not wait to find out
        wait(tracking._sent)
        with pytest.raises(TypeError, match="pickle"):
            end_epoch(tracking, loop, 0.5)  # the next epoch's end stops the run, as a waiting loop would have

        end_epoch(tracking, loop, threading.Lock())
        ctrl_c = ImportError("initialization failed")  # Ctrl-C in a compiled import, as pybind11 raises it
        ctrl_c.__cause__ = KeyboardInterrupt()
        tracking.on_exception(loop, ctrl_c)  # a warning, and the MLflow run is closed all the same, as KILLED
        assert "an epoch's metrics were not recorded" in caplog.text
        assert store.get_run(tracking.run_id).info.status == "KILLED"
    finally:
        tracking.close()
