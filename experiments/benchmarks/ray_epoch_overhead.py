"""Per-epoch wall time and fixed start-up, in-process against Ray Train with 1 worker.

Each job is trained to two lengths (early stopping off, no progress output) in both modes, so the
fixed cost cancels: per-epoch wall = (wall(long) - wall(short)) / (long - short), the fixed
start-up = wall(short) - short x per-epoch. Wall is the whole `Trainer.fit()` (data, MLflow,
checkpoints every epoch, export), after `ray.init` (timed apart). Jobs: the README's digits demo
(experiments/digits_mlp.yaml) and the 100k x 32 MLP of experiments/benchmarks/torch_epoch.py.
Runs are interleaved over --repeats; the table shows medians.

    .venv/bin/python experiments/benchmarks/ray_epoch_overhead.py [--short 4] [--long 24] [--repeats 2]
        [--jobs digits 100k]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import yaml

from rayfit import Trainer

REPO = Path(__file__).resolve().parents[2]


def digits_job() -> dict:
    return yaml.safe_load((REPO / "experiments" / "digits_mlp.yaml").read_text())


def wide_job(folder: Path) -> dict:
    """The 100k x 32 synthetic MLP job of torch_epoch.py (batch 256, Adam)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100_000, 32)).astype(np.float32)
    np.savez(folder / "wide.npz", x=x, y=(x @ rng.normal(size=(32, 10))).argmax(1))
    return {
        "data": {"source": str(folder / "wide.npz"), "val_fraction": 0.1, "test_fraction": 0.0},
        "model": {"hidden_units": [128, 64, 32]},
        "optimizer": {"name": "adam", "lr": 0.001},
        "trainer": {"batch_size": 256},
    }


def fit_wall(folder: Path, job: dict, label: str, workers: int, epochs: int, mlflow_uri: str) -> float:
    """Seconds for one whole fit of `job` for `epochs` epochs with `workers` (0 = in-process)."""
    name = f"{label}-w{workers}-e{epochs}-{time.monotonic_ns()}"
    experiment = {**job, "name": name}
    experiment["trainer"] = {**job.get("trainer", {}), "epochs": epochs, "progress": "none"}
    experiment["early_stopping"] = {"enabled": False}
    experiment["tracking"] = {"storage": str(folder / "runs"), "uri": mlflow_uri}
    experiment["scaling"] = {"num_workers": workers}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(experiment))
    started = time.perf_counter()
    Trainer(path, progress=False).fit()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=4)
    parser.add_argument("--long", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--jobs", nargs="+", choices=["digits", "100k"], default=["digits", "100k"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        mlflow_uri = f"sqlite:///{folder}/mlflow.db"
        started = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False)
        ray_init_s = time.perf_counter() - started
        jobs = {"digits demo": digits_job, "100k x 32 MLP": lambda: wide_job(folder)}
        jobs = {label: make() for label, make in jobs.items() if label.split()[0] in args.jobs}
        walls: dict[tuple[str, int, int], list[float]] = {}
        fit_wall(folder, digits_job(), "warmup", 0, 1, mlflow_uri)  # MLflow store, imports
        for _ in range(args.repeats):
            for label, job in jobs.items():
                for workers in (0, 1):
                    for epochs in (args.short, args.long):
                        wall = fit_wall(folder, job, label.split()[0], workers, epochs, mlflow_uri)
                        walls.setdefault((label, workers, epochs), []).append(wall)
        ray.shutdown()
    print(f"ray.init {ray_init_s:.1f} s (not counted); runs of {args.short} and {args.long} epochs, "
          f"medians of {args.repeats}")
    print(f"{'job':<16}{'mode':<16}{'epoch wall s':>13}{'x in-proc':>10}{'fixed s':>9}")
    for label in jobs:
        base = None
        for workers in (0, 1):
            short = statistics.median(walls[(label, workers, args.short)])
            long = statistics.median(walls[(label, workers, args.long)])
            per_epoch = (long - short) / (args.long - args.short)
            fixed = short - args.short * per_epoch
            base = base or per_epoch
            mode = "in-process" if workers == 0 else "Ray Train x1"
            print(f"{label:<16}{mode:<16}{per_epoch:>13.3f}{per_epoch / base:>9.2f}x{fixed:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
