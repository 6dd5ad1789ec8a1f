"""What Ray Train costs: the same experiment in-process and in 1 and 2 Ray Train workers.

Prints, for each way of running: the fit's wall time, the fixed start-up overhead (wall time
minus the time spent in epochs), the median epoch time, samples/s, and ratios to the in-process
run. One process per machine core is the most the 2 workers get (1 CPU each), so on a 2-core
machine 2 workers show what DDP costs rather than what it gains.

Run from the repository root:

    .venv/bin/python experiments/benchmarks/ray_train.py [--rows 100000] [--epochs 4]
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

FEATURES, CLASSES, HIDDEN = 32, 10, [128, 64, 32]


def write_data(folder: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    y = (x @ rng.normal(size=(FEATURES, CLASSES))).argmax(1)
    path = folder / "data.npz"
    np.savez(path, x=x, y=y)
    return path


def run(folder: Path, data: Path, workers: int, epochs: int, batch: int) -> dict[str, float]:
    """One fit; batch is the global batch, split over the workers."""
    name = f"w{workers}"
    experiment = {
        "name": name,
        "data": {"source": str(data), "val_fraction": 0.1, "test_fraction": 0.0},
        "model": {"hidden_units": HIDDEN},
        "trainer": {"epochs": epochs, "batch_size": batch // max(workers, 1), "progress": "none"},
        "tracking": {"enabled": False, "storage": str(folder / "runs")},
        "scaling": {"num_workers": workers},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(experiment))
    started = time.perf_counter()
    result = Trainer(path).fit()
    wall = time.perf_counter() - started
    epoch_times = [row["epoch_time_s"] for row in result.history]
    return {
        "wall_s": wall,
        "overhead_s": wall - sum(epoch_times),
        "epoch_s": statistics.median(epoch_times[1:] or epoch_times),
        "samples_per_s": statistics.median(row["samples_per_s"] for row in result.history[1:]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256, help="global batch")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = write_data(folder, args.rows)
        started = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False)
        ray_init_s = time.perf_counter() - started
        figures = {w: run(folder, data, w, args.epochs, args.batch) for w in (0, 1, 2)}
        ray.shutdown()
    base = figures[0]
    print(f"{args.rows} rows x {FEATURES}, MLP {HIDDEN}, global batch {args.batch}, {args.epochs} epochs, "
          f"CPU; ray.init {ray_init_s:.1f}s (not counted below)")
    print(f"{'run':<16}{'fit wall s':>11}{'start-up s':>12}{'epoch s':>9}{'x in-proc':>10}{'samples/s':>11}")
    for workers, f in figures.items():
        label = "in-process" if workers == 0 else f"Ray Train x{workers}"
        print(f"{label:<16}{f['wall_s']:>11.1f}{f['overhead_s']:>12.1f}{f['epoch_s']:>9.3f}"
              f"{f['epoch_s'] / base['epoch_s']:>9.2f}x{f['samples_per_s']:>11.0f}")
    print(f"Ray Train start-up overhead over in-process: {figures[1]['overhead_s'] - base['overhead_s']:.1f}s "
          f"(1 worker), {figures[2]['overhead_s'] - base['overhead_s']:.1f}s (2 workers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
