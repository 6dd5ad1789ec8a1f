"""What rayfit's per-epoch writes cost in one process (issue 8's target: at most 5% of a 0.1 s
epoch, i.e. 5 ms).

The README's digits job (experiments/digits_mlp.yaml, early stopping off) is trained in this process
with a checkpoint every epoch and MLflow tracking on ("writes"), and again with both off ("no
writes": one checkpoint at the end only), interleaved over `--repeats` repeats. For each, the median
of the epoch-end to epoch-end wall times of the second half of the epochs (steady state: the first
seconds hold one-time work, such as the MLflow tracking process importing what the run's end
needs on the other core; whole_process.py counts that). Their
difference is what the writes cost each epoch: serializing and writing the checkpoint, its index and
retention, and the MLflow metrics, including what the background writer takes from the steps. The
history files are written in both. The loop's own `time_callbacks_s` is shown beside them.

    .venv/bin/python experiments/benchmarks/epoch_writes.py [--epochs 150] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import rayfit

EXPERIMENT = Path(__file__).resolve().parents[1] / "digits_mlp.yaml"
MODES = {
    "writes": [],
    "no writes": ["checkpoint.every_epochs=0", "tracking.enabled=false"],
}


def run(mode: str, folder: Path, epochs: int) -> dict[str, float]:
    overrides = [
        f"trainer.epochs={epochs}", "early_stopping.enabled=false", "trainer.progress=none",
        "scaling.num_workers=0", f"tracking.storage={folder / 'runs'}",
        f"tracking.uri=sqlite:///{folder / 'mlflow.db'}", f"name={mode.replace(' ', '_')}",
        *MODES[mode],
    ]
    trainer = rayfit.Trainer(EXPERIMENT, overrides=overrides)
    ends: list[float] = []
    trainer.register_progress_callback(lambda epoch, metrics: ends.append(time.perf_counter()))
    result = trainer.fit()
    half = epochs // 2  # steady state only; the last epoch saves in both modes
    cycles = [b - a for a, b in zip(ends, ends[1:])][half:-1]
    rows = result.history[half + 1 : -1]
    return {
        "cycle": statistics.median(cycles),
        "epoch": statistics.median(row["epoch_time_s"] for row in rows),
        "callbacks": statistics.median(row["time_callbacks_s"] for row in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="rayfit-writes-") as tmp:
        for repeat in range(args.repeats):
            order = list(MODES) if repeat % 2 == 0 else list(reversed(MODES))
            for mode in order:
                folder = Path(tmp) / f"{repeat}-{mode.replace(' ', '_')}"
                folder.mkdir()
                figures[mode].append(run(mode, folder, args.epochs))
                print(f"repeat {repeat + 1}: {mode:<10} {figures[mode][-1]['cycle'] * 1000:.1f} ms per epoch", flush=True)
    median = {mode: {k: statistics.median(f[k] for f in runs) for k in runs[0]} for mode, runs in figures.items()}
    print(f"\n{args.epochs} epochs a run, medians of {args.repeats} repeats (load {os.getloadavg()[0]:.2f})\n")
    print("| mode | epoch end to end ms | batches ms (epoch_time_s) | time_callbacks_s ms |")
    print("|---|---|---|---|")
    for mode, m in median.items():
        print(f"| {mode} | {m['cycle'] * 1000:.1f} | {m['epoch'] * 1000:.1f} | {m['callbacks'] * 1000:.1f} |")
    cost = median["writes"]["cycle"] - median["no writes"]["cycle"]
    print(f"\nper-epoch writes: {cost * 1000:.1f} ms = {cost / 0.1:.1%} of a 0.1 s epoch (target <= 5%)")


if __name__ == "__main__":
    main()
