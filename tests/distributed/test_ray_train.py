"""Ray Train wraps the loop: DDP over 2 workers equals one process with the same global batch,
and killed workers or a killed driver resume to the same weights. One local Ray per module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient

from rayfit import Trainer
from rayfit.callbacks.checkpoint import CheckpointIndex
from rayfit.cli import main
from rayfit.loop.epoch_clock import TIME_KEYS
from tests.conftest import checkpoint_arrays
from tests.distributed.streamed_run import assert_streamed_run_scored_exactly_the_test_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))
from make_parquet_data import write_parquet_data  # noqa: E402

pytestmark = pytest.mark.slow  # real processes and Ray clusters: not in the fast tier

# A user model that sleeps in training forward passes (so a test can kill a worker mid-epoch),
# has dropout (so each rank's RNG must be restored) and writes its worker's pid per rank.
SLOW_MODEL = """
import os, time
from pathlib import Path
import torch.distributed as dist
from torch import nn

class Slow(nn.Module):
    def __init__(self, n_inputs, n_outputs, dropout):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_inputs, 32), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(32, n_outputs))

    def forward(self, x):
        if self.training:
            time.sleep(0.01)
        return self.net(x)

def build(n_inputs, n_outputs, pid_dir="", dropout=0.2):
    if pid_dir and dist.is_available() and dist.is_initialized():
        Path(pid_dir, f"rank{dist.get_rank()}.pid").write_text(str(os.getpid()))
    return Slow(n_inputs, n_outputs, dropout)
"""
# The same for backend tensorflow: a Keras model whose sleep runs in the compiled step.
SLOW_KERAS_MODEL = """
import json, os, time
from pathlib import Path
import keras
import tensorflow as tf

@keras.saving.register_keras_serializable("rayfit_tests")
class Sleep(keras.layers.Layer):
    def call(self, x, training=False):
        if training:
            tf.py_function(lambda: time.sleep(0.01), [], [])
        return x

def build(n_inputs, n_outputs, pid_dir="", dropout=0.2):
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
    if pid_dir:
        Path(pid_dir, f"rank{task}.pid").write_text(str(os.getpid()))
    inputs = keras.Input((n_inputs,))
    hidden = keras.layers.Dense(32, activation="relu")(Sleep()(inputs))
    outputs = keras.layers.Dense(n_outputs)(keras.layers.Dropout(dropout)(hidden))
    return keras.Model(inputs, outputs)
"""
TIMING = {"epoch_time_s", "samples_per_s", "peak_memory_mb", *TIME_KEYS}


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray for this module; user model code is importable by workers via PYTHONPATH."""
    code = tmp_path_factory.mktemp("user_code")
    (code / "slow_model.py").write_text(SLOW_MODEL)
    (code / "slow_keras_model.py").write_text(SLOW_KERAS_MODEL)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), old]))
    sys.path.insert(0, str(code))
    if ray.is_initialized():  # a Ray left by another module would have no PYTHONPATH for workers
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    sys.path.remove(str(code))
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


def write(folder: Path, name: str, **sections) -> Path:
    experiment = {
        "name": name,
        "data": {"source": "sklearn:digits", "val_fraction": 0.15, "test_fraction": 0.15},
        "model": {"type": "mlp", "hidden_units": [32]},
        "optimizer": {"name": "adam", "lr": 0.003},
        "trainer": {"epochs": 3, "batch_size": 32, "seed": 1},
        "tracking": {"enabled": False, "storage": str(folder / "runs")},
        "scaling": {"num_workers": 2, "max_failures": 2},
    }
    for key, value in sections.items():
        experiment[key] = {**experiment.get(key, {}), **value} if isinstance(value, dict) else value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return path


def strip(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


# TensorflowTrainer's averaging matches too (checked by hand with this test at 1e-4: 40 s more
# than the suite's time budget affords); its bitwise restarts are tested below.
@pytest.mark.parametrize("backend", ["torch"])
def test_two_workers_equal_one_process_with_the_same_global_batch(backend, ray_cluster, workdir, mlflow_uri):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 16)).astype(np.float32)  # 1024 rows: whole global batches of 64
    np.savez(workdir / "d.npz", x=x, y=(x @ rng.normal(size=(16, 4))).argmax(1))
    data = {"source": str(workdir / "d.npz"), "val_fraction": 0.0, "test_fraction": 0.0}
    one = Trainer(write(workdir, "one", backend=backend, data=data, trainer={"batch_size": 64},
                        scaling={"num_workers": 0})).fit()
    two = Trainer(write(workdir, "two", backend=backend, data=data, trainer={"batch_size": 32},
                        tracking={"enabled": True, "uri": mlflow_uri, "experiment": f"ddp-{backend}"})).fit()

    # The workers average their half-batch gradients (DDP; MultiWorkerMirroredStrategy's
    # all-reduce); one process takes the mean over the whole batch. Same rows, same maths, float32
    # sums in another order (and 1 thread per worker against 2 in-process): after 48 Adam steps
    # weights agree to about 1e-6, so 1e-4 is a bound that a real difference (a shard, a batch or
    # a step out of place) breaks by orders.
    assert len(final_state(one.run_dir)) == len(final_state(two.run_dir)) > 0
    for index, (value, other) in enumerate(zip(final_state(one.run_dir), final_state(two.run_dir))):
        np.testing.assert_allclose(other, value, atol=1e-4, rtol=1e-4, err_msg=f"model tensor {index}")
    one_loss = [row["train_loss"] for row in one.history]
    two_loss = [row["train_loss"] for row in two.history]
    assert two_loss == pytest.approx(one_loss, rel=1e-4)  # reduced over both ranks' samples
    assert [row["samples_per_s"] * row["epoch_time_s"] for row in two.history] == pytest.approx([1024] * 3)

    client = MlflowClient(mlflow_uri)
    points = client.get_metric_history(two.mlflow_run_id, "train_loss")
    assert [p.step for p in points] == [1, 2, 3]  # logged once, by rank 0
    assert [p.value for p in points] == pytest.approx(two_loss)


@pytest.fixture(scope="module", params=["torch", "tensorflow"])
def slow_reference(request, ray_cluster, tmp_path_factory) -> tuple[dict, Path]:
    """An uninterrupted 2-worker run of the slow model (TorchTrainer with DDP, or TensorflowTrainer
    with MultiWorkerMirroredStrategy), to compare the killed runs against."""
    folder = tmp_path_factory.mktemp("reference")
    sections = slow_sections(folder, request.param)
    result = Trainer(write(folder, "slow", **sections)).fit()
    assert [a["workers"] for a in json.loads((result.run_dir / "run.json").read_text())["attempts"]] == [2]
    assert result.test_metrics["test_accuracy"] > 0.5
    return sections, result.run_dir


def slow_sections(folder: Path, backend: str = "torch") -> dict:
    (folder / "pids").mkdir(exist_ok=True)
    module = "slow_model" if backend == "torch" else "slow_keras_model"
    return {
        "backend": backend,
        "model": {"type": f"{module}:build", "kwargs": {"pid_dir": str(folder / "pids")}},
        "trainer": {"epochs": 3, "batch_size": 32, "accumulate": 2},
        "checkpoint": {"every_epochs": 1, "every_steps": 5},
        "schedule": {"name": "cosine", "interval": "step", "T_max": 50, "warmup": 3},
    }


def wait_for(condition, what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def mid_epoch_checkpoint(run_dir: Path, min_step: int) -> bool:
    index = run_dir / "checkpoints" / "index.json"
    try:
        entries = json.loads(index.read_text())["checkpoints"]
    except (OSError, json.JSONDecodeError):
        return False
    return bool(entries) and entries[-1]["step"] >= min_step


def fit_interrupted(trainer: Trainer, run_dir: Path, min_step: int, interrupt) -> None:
    """fit() in a thread; once a checkpoint at min_step or later exists, interrupt() (a kill);
    the fit must still finish."""
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=trainer.fit()), daemon=True)
    thread.start()
    wait_for(lambda: mid_epoch_checkpoint(run_dir, min_step), f"a checkpoint after step {min_step}")
    interrupt()
    thread.join(timeout=400)
    assert "result" in outcome, "the run did not finish after the interruption"


def final_state(run_dir: Path) -> list[np.ndarray]:
    """Every model tensor of the run's last checkpoint (.pt for torch, .npz for tensorflow)."""
    return checkpoint_arrays(CheckpointIndex(run_dir / "checkpoints").latest)


def assert_same(reference: Path, resumed: Path) -> None:
    expected, found = final_state(reference), final_state(resumed)
    assert len(found) == len(expected)
    for index, (value, other) in enumerate(zip(expected, found)):
        assert np.array_equal(value, other), f"model tensor {index} differs"
    read = lambda p: strip(json.loads((p / "history.json").read_text()))  # noqa: E731
    assert read(resumed) == read(reference)


def test_sigkill_of_a_worker_then_of_the_driver_resumes_to_the_same_weights(
    slow_reference, workdir, ray_cluster
):
    """`rayfit train` with 2 workers: a worker SIGKILLed mid-epoch makes Ray restart the group from
    the last checkpoint; then the driver SIGKILLed, and the same command resumes. Weights and
    history equal, bitwise, those of the uninterrupted run."""
    sections, reference = slow_reference
    sections = {**sections, "model": {**sections["model"], "kwargs": {"pid_dir": str(workdir / "pids")}}}
    (workdir / "pids").mkdir()
    experiment = write(workdir, "slow", **sections)
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}
    command = [sys.executable, "-m", "rayfit.cli", "train", str(experiment)]
    run_dir, pid_file = workdir / "runs" / "slow", workdir / "pids" / "rank1.pid"
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: mid_epoch_checkpoint(run_dir, 15), "a checkpoint after step 15")
    worker = int(pid_file.read_text())
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: mid_epoch_checkpoint(run_dir, 25), "a checkpoint after step 25, after the restart")
    assert int(pid_file.read_text()) != worker  # a new worker took over
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    starts = json.loads((run_dir / "run.json").read_text())["attempts"]
    # after each kill the group restarted from the newest checkpoint in the run folder (which every
    # rank sees here), not from an older one Ray holds; the last start is the re-run command
    assert len(starts) >= 3 and 15 <= starts[1]["step"] and starts[-1]["step"] >= 25
    assert_same(reference, run_dir)


@pytest.mark.parametrize(
    "scaling, message",
    [
        ({"num_workers": 8}, "scaling.num_workers: 8 workers x 1 CPU need 8 CPU, but the Ray cluster has 2"),
        ({"use_gpu": True}, "scaling.use_gpu: the Ray cluster has no GPU"),
    ],
)
def test_requests_the_cluster_cannot_place_fail_before_any_worker_starts(
    ray_cluster, workdir, capsys, scaling, message
):
    assert main(["train", str(write(workdir, "bad", scaling=scaling))]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {message}" or err.startswith(f"error: {message}")
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_parquet_trains_and_scores_exactly_the_test_rows(workers, ray_cluster, workdir):
    """Parquet rows reach the loop through Ray Data (with 2 workers: `get_dataset_shard`, the train
    rows split between them). The test metric equals the exported model's accuracy on exactly the
    rows the split rule puts in the test set: every rank scores all of them, none twice."""
    folder = write_parquet_data(workdir / "rows", rows=3000, features=8, classes=3, rows_per_file=1000)
    data = {"source": str(folder), "target": "label", "streaming": True, "shuffle_buffer": 500}
    storage = f"file://{workdir / 'ray-storage'}"  # a pyarrow URI, as s3:// or gs:// would be
    path = write(workdir, "stream", data=data, trainer={"epochs": 1, "batch_size": 64},
                 optimizer={"lr": 0.01}, scaling={"num_workers": workers, "storage_path": storage,
                                                  "resources_per_worker": {"CPU": 0.5}})
    trainer = Trainer(path)
    result = trainer.fit()

    assert_streamed_run_scored_exactly_the_test_rows(trainer, result, folder, workers, batch_size=64)
    ray_checkpoints = list((workdir / "ray-storage" / "stream").glob("checkpoint_*-*"))
    assert len(ray_checkpoints) == (1 if workers else 0)  # Ray Train's run went to the URI


def test_a_ray_run_in_a_pipe_prints_epoch_lines_and_a_summary_but_no_ray_lines(workdir, ray_cluster):
    """`rayfit train` on the Ray path with its output piped (a CI log, `ray job submit`): one line
    per epoch from the workers' event stream and one summary, none of Ray's per-report lines or
    checkpoint paths, no bars."""
    experiment = write(workdir, "piped", trainer={"epochs": 2, "progress": "auto"}, scaling={"num_workers": 1})
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}
    done = subprocess.run([sys.executable, "-m", "rayfit.cli", "train", str(experiment)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert [line.split(" train_loss")[0] for line in done.stdout.splitlines() if line.startswith("epoch ")] == [
        "epoch 1/2", "epoch 2/2"]
    assert "piped finished after 2 epoch(s)" in done.stdout and "━" not in out
    for line in ("Reporting training result", "Checkpoint successfully created", "Attempting to start",
                 "INFO mlflow"):
        assert line not in out


def test_losing_a_node_finishes_on_what_remains(workdir, monkeypatch):
    """Two nodes (head and worker, 1 CPU each) on this machine; 2 elastic workers spread over
    them; the worker node is removed mid-run; the group restarts with 1 worker and finishes."""
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    code = workdir / "code"
    code.mkdir()
    (code / "slow_model.py").write_text(SLOW_MODEL)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")])))
    monkeypatch.syspath_prepend(str(code))
    # A restart first tries both workers until this times out (60 s by default), then goes on with 1.
    monkeypatch.setenv("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "10")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address)
    try:
        sections = slow_sections(workdir)
        sections["scaling"] = {"num_workers": [1, 2], "placement_strategy": "SPREAD", "max_failures": 3}
        run_dir = workdir / "runs" / "nodes"
        fit_interrupted(Trainer(write(workdir, "nodes", **sections)), run_dir, 15,
                        lambda: cluster.remove_node(node))
        status = json.loads((run_dir / "run.json").read_text())
        assert status["status"] == "finished"
        assert [a["workers"] for a in status["attempts"]][:1] == [2]
        assert status["attempts"][-1]["workers"] == 1 and status["attempts"][-1]["step"] > 0
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_an_unreachable_address_fails_fast(workdir, capsys):
    experiment = write(workdir, "far", scaling={"address": "127.0.0.1:9"})
    if ray.is_initialized():  # a Ray left by another test would be used instead of the address
        ray.shutdown()
    started = time.monotonic()
    assert main(["train", str(experiment)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: scaling.address: nothing answers at 127.0.0.1:9")
    assert time.monotonic() - started < 60
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize("slow_reference", ["torch"], indirect=True)
def test_pause_through_the_control_channel_with_two_workers_then_resume(slow_reference, workdir, ray_cluster):
    """Trainer.pause() from another thread reaches both ranks, which stop at the same batch and
    checkpoint; the run is marked paused and the workers are gone. Running it again resumes from
    that checkpoint and ends bitwise equal to a run never paused. Every epoch reaches this process,
    in order, from the workers, through the event stream."""
    sections, reference = slow_reference
    experiment = write(workdir, "slow", **sections)
    run_dir = workdir / "runs" / "slow"
    trainer = Trainer(experiment)
    events: list[dict] = []
    trainer.register_event_callback(events.append)
    fit_interrupted(trainer, run_dir, 8, trainer.pause)
    status = json.loads((run_dir / "run.json").read_text())
    assert status["status"] == "paused" and status["stop_reason"] == "pause requested"
    paused_at = CheckpointIndex(run_dir / "checkpoints").entries[-1]
    assert paused_at.step >= 10 and paused_at.epoch < 3
    assert events[-1]["type"] == "end" and events[-1]["status"] == "paused"
    wait_for(lambda: ray.available_resources().get("CPU") == 2, "the workers' CPUs back", timeout_s=30)

    again = Trainer(experiment)
    again.register_event_callback(events.append)
    result = again.fit()
    assert result.status == "finished"
    assert_same(reference, run_dir)
    epochs = [e["epoch"] for e in events if e["type"] == "epoch"]
    assert epochs == [1, 2, 3]
    assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})  # in order, none twice
    starts = json.loads((run_dir / "run.json").read_text())["attempts"]
    assert [a["step"] for a in starts] == [0, paused_at.step]
