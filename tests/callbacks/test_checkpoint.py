"""Checkpoint retention (best-K and last-N as separate policies) and what a checkpoint holds."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rayfit import Trainer
from rayfit.callbacks.background_writes import BackgroundWrites
from rayfit.backends.batch_layout import BATCH_ORDER
from rayfit.atomic_file import write_atomic
from rayfit.callbacks import checkpoint as checkpoint_module
from rayfit.callbacks.checkpoint import CheckpointIndex
from rayfit.cli import main
from rayfit.errors import CheckpointError
from rayfit.loop import Callback, EpochLoop
from tests.conftest import CHECKPOINT_SUFFIX, checkpoint_arrays, read_checkpoint


def test_best_k_and_last_n_both_hold_after_ten_epochs(make_experiment, backend):
    experiment = make_experiment(
        backend=backend,
        trainer={"epochs": 10, "batch_size": 128},
        optimizer={"name": "sgd", "lr": 0.5, "momentum": 0.9},  # noisy: the best epochs are not the last
        checkpoint={"every_epochs": 1, "every_steps": 4, "keep_last": 2, "keep_best": 3},
    )
    result = Trainer(experiment).fit()
    folder = result.run_dir / "checkpoints"
    index = json.loads((folder / "index.json").read_text())["checkpoints"]
    on_disk = {p.name for p in folder.glob("ckpt-*")}
    assert on_disk == {e["file"] for e in index}

    val_loss = {int(row["epoch"]): row["val_loss"] for row in result.history}
    best_epochs = sorted(val_loss, key=val_loss.get)[:3]
    suffix = CHECKPOINT_SUFFIX[backend]
    best_files = {f"ckpt-epoch{e:04d}-step{e * 10:07d}{suffix}" for e in best_epochs}  # 10 batches/epoch
    # the newest two: the step checkpoint at step 100 and the epoch-10 checkpoint at the same step
    newest = {f"ckpt-epoch0009-step0000100{suffix}", f"ckpt-epoch0010-step0000100{suffix}"}
    assert on_disk == best_files | newest  # everything else was deleted


BACKEND_STATE = {  # what each backend keeps: weights, optimizer, accumulation window, per-rank state
    "torch": ({"model", "optimizer", "grads", "ranks"}, {"torch_rng", "metrics"}),
    "tensorflow": ({"model", "optimizers", "learning_rates", "accumulated", "loss_scale", "ranks"},
                   {"sums", "last_loss"}),  # TF's dropout RNG state is a model variable
}


def test_a_checkpoint_holds_what_exact_resume_needs(make_experiment, backend):
    result = Trainer(make_experiment(backend=backend, trainer={"epochs": 1})).fit()
    folder = result.run_dir / "checkpoints"
    latest = json.loads((folder / "index.json").read_text())["checkpoints"][-1]["file"]
    payload = read_checkpoint(folder / latest)  # no code runs on load
    assert set(payload) >= {"loop", "backend", "callbacks", "rng", "config", "data_info", "ray_version"}
    assert payload["batch_order"] == BATCH_ORDER
    backend_keys, rank_keys = BACKEND_STATE[backend]
    assert set(payload["backend"]) >= backend_keys
    assert set(payload["backend"]["ranks"][0]) >= rank_keys
    assert payload["loop"]["epoch"] == 1 and len(json.loads(payload["loop"]["history"])) == 1
    assert json.loads(payload["config"])["name"] == "tiny"
    assert len(json.loads(payload["data_info"])["mean"]) == 64


def test_a_checkpoint_of_the_old_batch_order_is_refused_in_one_line(make_experiment, capsys):
    """torch drew each epoch's order with torch.randperm before batch_layout.epoch_permutation:
    such a checkpoint cannot resume exactly, and says so instead of going on."""
    experiment = make_experiment(trainer={"epochs": 1})
    result = Trainer(experiment).fit()
    folder = result.run_dir / "checkpoints"
    latest = folder / json.loads((folder / "index.json").read_text())["checkpoints"][-1]["file"]
    payload = read_checkpoint(latest)
    del payload["batch_order"]  # as an earlier rayfit wrote it
    torch.save(payload, latest)
    capsys.readouterr()
    assert main(["train", str(experiment), "--extend", "--set", "trainer.epochs=2"]) == 2
    error = capsys.readouterr().err
    assert "earlier rayfit that ordered each epoch's batches otherwise" in error and error.count("\n") == 1, error


FAILING_MODELS = {"torch": """
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
""", "tensorflow": """
import keras
import tensorflow as tf

class Fails(keras.layers.Layer):
    def build(self, shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, x, training=False):
        if training:  # counted in the graph: the compiled step runs Python only while tracing
            self.calls.assign_add(1.0)
            tf.debugging.assert_less(self.calls, 15.0, message="user model failed")
        return x

def build(n_inputs, n_outputs):
    inputs = keras.Input((n_inputs,))
    return keras.Model(inputs, keras.layers.Dense(n_outputs)(Fails()(inputs)))
"""}


def test_an_exception_saves_a_checkpoint_at_the_last_whole_batch(make_experiment, workdir, monkeypatch, backend):
    (workdir / f"failing_model_{backend}.py").write_text(FAILING_MODELS[backend])
    monkeypatch.syspath_prepend(str(workdir))
    experiment = make_experiment(
        backend=backend, model={"type": f"failing_model_{backend}:build"}, trainer={"batch_size": 128},
        checkpoint={"every_epochs": 5},
    )
    with pytest.raises(Exception, match="user model failed"):  # RuntimeError, or TF's InvalidArgumentError
        Trainer(experiment).fit()
    folder = workdir / "runs" / "tiny" / "checkpoints"
    index = json.loads((folder / "index.json").read_text())["checkpoints"]
    assert [(e["epoch"], e["step"]) for e in index] == [(1, 14)]  # 14 batches done, the 15th failed
    assert read_checkpoint(folder / index[0]["file"])["loop"]["batch_in_epoch"] == 4


def test_a_rebuilt_index_takes_only_the_checkpoint_files_of_its_folder(tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    names = ["ckpt-epoch0002-step0000020.pt", "ckpt-epoch0001-step0000010.pt", "notes.txt", "ckpt-epoch1.pt"]
    for name in names:
        (folder / name).write_bytes(b"x")
    (folder / "ckpt-epoch0009-step0000090.pt").mkdir()  # not a file

    index = CheckpointIndex(folder)

    assert [(e.file, e.epoch, e.step, e.metric) for e in index.entries] == [
        ("ckpt-epoch0001-step0000010.pt", 1, 10, None), ("ckpt-epoch0002-step0000020.pt", 2, 20, None)]
    assert index.latest == folder / "ckpt-epoch0002-step0000020.pt"
    assert "index.json is missing; indexed the 2 checkpoint files there again" in caplog.text
    (tmp_path / "data.csv").write_text("a,y\n1,0\n")
    (folder / "ckpt-epoch0003-step0000030.pt").symlink_to(tmp_path / "data.csv")
    with pytest.raises(CheckpointError, match="ckpt-epoch0003-step0000030.pt.*leads outside"):
        CheckpointIndex(folder)
    assert (tmp_path / "data.csv").read_text() == "a,y\n1,0\n"


def test_without_index_json_a_paused_run_resumes_from_its_checkpoint_files(make_experiment, workdir, caplog):
    experiment = make_experiment(trainer={"epochs": 2})
    trainer = Trainer(experiment)
    trainer.register_progress_callback(lambda epoch, metrics: os.kill(os.getpid(), signal.SIGTERM))
    assert trainer.fit().interrupted
    folder = workdir / "runs" / "tiny" / "checkpoints"
    before = {p.name for p in folder.glob("ckpt-*")}
    (folder / "index.json").unlink()
    caplog.set_level(logging.INFO, logger="rayfit")

    result = Trainer(experiment).fit()

    assert caplog.text.count("index.json is missing; indexed the 1 checkpoint files there again") == 1
    assert f"resumed tiny from {sorted(before)[-1]}" in caplog.text  # not from epoch 0
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert before <= {p.name for p in folder.glob("ckpt-*")}


class WeightsAtEpochEnd(Callback):
    """Records the model's tensors at each epoch's end, after Checkpointing has run."""

    def __init__(self) -> None:
        self.seen: dict[int, list[np.ndarray]] = {}

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        model = loop.backend.state_dict()["model"]
        values = model.values() if isinstance(model, dict) else model
        self.seen[loop.state.epoch] = [np.array(v.numpy() if hasattr(v, "numpy") else v) for v in values]


def test_a_checkpoint_written_in_the_background_holds_its_own_epochs_weights(make_experiment, backend, monkeypatch):
    """The write overlaps the next epoch, which changes the weights in place: the file must not see that."""
    def slow_write(path: Path, data: bytes) -> None:
        time.sleep(0.3)  # a slow disk: the next epoch's steps run before the file is written
        write_atomic(path, data)

    monkeypatch.setattr(checkpoint_module, "write_atomic", slow_write)
    recorder = WeightsAtEpochEnd()
    experiment = make_experiment(backend=backend, trainer={"epochs": 4}, checkpoint={"keep_last": 4, "keep_best": 0})
    result = Trainer(experiment, callbacks=[recorder]).fit()
    folder = result.run_dir / "checkpoints"
    files = sorted(folder.glob("ckpt-*"))
    assert [int(f.name[10:14]) for f in files] == [1, 2, 3, 4]
    for epoch, path in enumerate(files, start=1):
        on_disk = checkpoint_arrays(path)
        assert len(on_disk) == len(recorder.seen[epoch])
        assert all(np.array_equal(a, b) for a, b in zip(on_disk, recorder.seen[epoch]))
    assert not any(np.array_equal(a, b) for a, b in zip(recorder.seen[1], recorder.seen[4]))


def test_a_failed_background_write_is_raised_by_the_next_save():
    writes = BackgroundWrites()
    done: list[int] = []

    def fail() -> None:
        raise OSError("disk full")

    writes.submit(lambda: done.append(1))
    writes.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        writes.submit(lambda: done.append(3))
    writes.close()
    assert done == [1]
