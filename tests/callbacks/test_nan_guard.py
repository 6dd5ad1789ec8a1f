"""A NaN loss stops the run with a clear error and leaves the last good checkpoint as latest."""

from __future__ import annotations

import json

import torch

from rayfit.cli import main

# A user model whose output turns NaN at its 26th training batch (epoch 2 of 10 batches each).
NAN_MODEL = """
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
"""


def test_nan_stops_with_one_line_error_and_keeps_last_good_checkpoint(
    make_experiment, workdir, monkeypatch, capsys
):
    (workdir / "nan_model.py").write_text(NAN_MODEL)
    monkeypatch.syspath_prepend(str(workdir))
    experiment = make_experiment(
        model={"type": "nan_model:build"},
        trainer={"epochs": 5, "batch_size": 128},
        checkpoint={"every_epochs": 1, "every_steps": 0},
    )
    assert main(["train", str(experiment)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: training failed: training loss is nan at epoch 3, batch 6")

    folder = workdir / "runs" / "tiny" / "checkpoints"
    index = json.loads((folder / "index.json").read_text())["checkpoints"]
    assert [e["step"] for e in index] == [10, 20]  # nothing written after the NaN at step 26
    weights = torch.load(folder / index[-1]["file"], weights_only=True)["backend"]["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert json.loads((workdir / "runs" / "tiny" / "run.json").read_text())["status"] == "failed"
