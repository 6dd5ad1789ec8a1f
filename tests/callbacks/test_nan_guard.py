"""A NaN loss stops the run with a clear error and leaves the last good checkpoint as latest."""

from __future__ import annotations

import json

import numpy as np

from rayfit.cli import main
from tests.conftest import checkpoint_arrays

# A user model whose output turns NaN at its 26th training batch (epoch 2 of 10 batches each).
NAN_MODELS = {"torch": """
import torch
from torch import nn

class GoesNaN(nn.Module):
    def __init__(self, n_inputs, n_outputs):
        super().__init__()
        self.linear = nn.Linear(n_inputs, n_outputs)
        self.calls = 0

    def forward(self, x):
        out = self.linear(x)
        if self.training:
            self.calls += 1
            if self.calls >= 26:
                out = out * float("nan")
        return out

def build(n_inputs, n_outputs):
    return GoesNaN(n_inputs, n_outputs)
""", "tensorflow": """
import keras
import tensorflow as tf

class GoesNaN(keras.layers.Layer):
    def build(self, shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, x, training=False):
        if training:  # counted in the graph: the compiled step runs Python only while tracing
            self.calls.assign_add(1.0)
            return x + tf.where(self.calls >= 26.0, float("nan"), 0.0)  # (x * nan in tf.where: NaN grads)
        return x

def build(n_inputs, n_outputs):
    inputs = keras.Input((n_inputs,))
    return keras.Model(inputs, GoesNaN()(keras.layers.Dense(n_outputs)(inputs)))
"""}


def test_nan_stops_with_one_line_error_and_keeps_last_good_checkpoint(
    make_experiment, workdir, monkeypatch, capsys, backend
):
    (workdir / f"nan_model_{backend}.py").write_text(NAN_MODELS[backend])
    monkeypatch.syspath_prepend(str(workdir))
    experiment = make_experiment(
        backend=backend, model={"type": f"nan_model_{backend}:build"},
        trainer={"epochs": 5, "batch_size": 128},
        checkpoint={"every_epochs": 1, "every_steps": 0},
    )
    assert main(["train", str(experiment)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: training failed: training loss is nan at epoch 3, batch 6")

    folder = workdir / "runs" / "tiny" / "checkpoints"
    index = json.loads((folder / "index.json").read_text())["checkpoints"]
    assert [e["step"] for e in index] == [10, 20]  # nothing written after the NaN at step 26
    assert all(np.isfinite(w).all() for w in checkpoint_arrays(folder / index[-1]["file"]))
    assert json.loads((workdir / "runs" / "tiny" / "run.json").read_text())["status"] == "failed"
