"""TensorFlow trains on streamed rows as torch does (tests/distributed/test_ray_train.py's streamed
test, on the TF backend): Parquet rows reach the loop through Ray Data, in this process and with
2 Ray workers (each a shard of the train rows), and the test metric is the exported model's
accuracy on exactly the test rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import ray
import yaml

from rayfit import Trainer
from tests.distributed.streamed_run import assert_streamed_run_scored_exactly_the_test_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))
from make_parquet_data import write_parquet_data  # noqa: E402

pytestmark = pytest.mark.slow  # a Ray cluster and Ray Train workers: not in the fast tier


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray for this module (Ray Data streams the rows; Ray Train starts the workers)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_parquet_trains_tensorflow_and_scores_exactly_the_test_rows(workers, ray_cluster, workdir):
    folder = write_parquet_data(workdir / "rows", rows=3000, features=8, classes=3, rows_per_file=1000)
    experiment = {
        "name": "stream", "backend": "tensorflow",
        "data": {"source": str(folder), "target": "label", "streaming": True, "shuffle_buffer": 500},
        "model": {"type": "mlp", "hidden_units": [32]},
        "optimizer": {"name": "adam", "lr": 0.01},
        "trainer": {"epochs": 1, "batch_size": 64, "seed": 1},
        "tracking": {"enabled": False, "storage": str(workdir / "runs")},
        "scaling": {"num_workers": workers, "resources_per_worker": {"CPU": 0.5}},
    }
    path = workdir / "stream.yaml"
    path.write_text(yaml.safe_dump(experiment))
    trainer = Trainer(path)
    result = trainer.fit()

    assert_streamed_run_scored_exactly_the_test_rows(trainer, result, folder, workers, batch_size=64)
