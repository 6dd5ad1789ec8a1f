"""Checkpoint retention (best-K and last-N as separate policies) and what a checkpoint holds."""

from __future__ import annotations

import json

import pytest
import torch

from rayfit import Trainer


def test_best_k_and_last_n_both_hold_after_ten_epochs(make_experiment):
    experiment = make_experiment(
        trainer={"epochs": 10, "batch_size": 128},
        optimizer={"name": "sgd", "lr": 0.5, "momentum": 0.9},  # noisy: the best epochs are not the last
        checkpoint={"every_epochs": 1, "every_steps": 4, "keep_last": 2, "keep_best": 3},
    )
    result = Trainer(experiment).fit()
    folder = result.run_dir / "checkpoints"
    index = json.loads((folder / "index.json").read_text())["checkpoints"]
    on_disk = {p.name for p in folder.glob("*.pt")}
    assert on_disk == {e["file"] for e in index}

    val_loss = {int(row["epoch"]): row["val_loss"] for row in result.history}
    best_epochs = sorted(val_loss, key=val_loss.get)[:3]
    best_files = {f"ckpt-epoch{e:04d}-step{e * 10:07d}.pt" for e in best_epochs}  # 10 batches/epoch
    # the newest two: the step checkpoint at step 100 and the epoch-10 checkpoint at the same step
    newest = {"ckpt-epoch0009-step0000100.pt", "ckpt-epoch0010-step0000100.pt"}
    assert on_disk == best_files | newest  # everything else was deleted


def test_a_checkpoint_holds_what_exact_resume_needs(make_experiment):
    result = Trainer(make_experiment(trainer={"epochs": 1})).fit()
    folder = result.run_dir / "checkpoints"
    latest = json.loads((folder / "index.json").read_text())["checkpoints"][-1]["file"]
    payload = torch.load(folder / latest, weights_only=True)  # no code runs on load
    assert set(payload) >= {"loop", "backend", "callbacks", "rng", "config", "data_info", "ray_version"}
    assert set(payload["backend"]) >= {"model", "optimizer", "grads", "ranks"}
    assert set(payload["backend"]["ranks"][0]) >= {"torch_rng", "metrics"}
    assert payload["loop"]["epoch"] == 1 and len(payload["loop"]["history"]) == 1
    assert payload["config"]["name"] == "tiny"
    assert len(payload["data_info"]["mean"]) == 64


FAILING_MODEL = """
from torch import nn

class Fails(nn.Module):
    def __init__(self, n_inputs, n_outputs):
        super().__init__()
        self.linear = nn.Linear(n_inputs, n_outputs)
        self.calls = 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == 15:
                raise RuntimeError("user model failed")
        return self.linear(x)

def build(n_inputs, n_outputs):
    return Fails(n_inputs, n_outputs)
"""


def test_an_exception_saves_a_checkpoint_at_the_last_whole_batch(make_experiment, workdir, monkeypatch):
    (workdir / "failing_model.py").write_text(FAILING_MODEL)
    monkeypatch.syspath_prepend(str(workdir))
    experiment = make_experiment(
        model={"type": "failing_model:build"}, trainer={"batch_size": 128},
        checkpoint={"every_epochs": 5},
    )
    with pytest.raises(RuntimeError, match="user model failed"):
        Trainer(experiment).fit()
    folder = workdir / "runs" / "tiny" / "checkpoints"
    index = json.loads((folder / "index.json").read_text())["checkpoints"]
    assert [(e["epoch"], e["step"]) for e in index] == [(1, 14)]  # 14 batches done, the 15th failed
    payload = torch.load(folder / index[0]["file"], weights_only=True)
    assert payload["loop"]["batch_in_epoch"] == 4
