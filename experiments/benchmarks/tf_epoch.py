"""Epoch time of rayfit's TensorFlow backend against Keras `model.fit`, on one job, in one run.

The job is torch_epoch.py's: the same MLP (32 -> [128, 64, 32] -> 10, ReLU, Adam lr 1e-3,
cross-entropy, batch 256, CPU, one process) on the same synthetic data (100k rows x 32 features,
10 classes, one .npz written once), trained by:

  1. Keras fit  keras.Sequential of the same Dense layers, compile(Adam, sparse cross-entropy from
                logits, accuracy), fit(x, y, batch_size=256, shuffle=True, verbose=0) on the
                standardised arrays: what a Keras user writes (Keras 3, its defaults). Epoch
                times come from a callback's on_epoch_begin/on_epoch_end. The reference (1.00).
  2. rayfit     torch_epoch.run_rayfit with backend: tensorflow: rayfit.Trainer(...).fit() with
                the progress bar, MLflow tracking and epoch checkpoints on; its epoch time is the
                `epoch_time_s` of its history (the batches of the epoch).

Each runs `--epochs` epochs per repeat; the first epoch (tracing, warm-up) is dropped and the
median of the rest is the repeat's figure. They run interleaved, the order rotating each repeat,
over `--repeats` repeats; the table shows the median over repeats, the fastest epoch of all, and
the ratios to Keras fit, then `rayfit / Keras fit = X (target <= 0.9)`.

Run (from the repository root):

    .venv/bin/python experiments/benchmarks/tf_epoch.py            # full size, about two minutes
    .venv/bin/python experiments/benchmarks/tf_epoch.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from torch_epoch import BATCH, CLASSES, FEATURES, HIDDEN, LR, median_after_warmup, run_rayfit, write_data  # noqa: E402

TARGET = 0.9


class EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.times.append(time.perf_counter() - self._started)


def run_keras_fit(x: np.ndarray, y: np.ndarray, epochs: int) -> dict[str, Any]:
    keras.utils.set_random_seed(0)
    layers: list[keras.layers.Layer] = [keras.Input((FEATURES,))]
    layers += [keras.layers.Dense(units, activation="relu") for units in HIDDEN]
    model = keras.Sequential([*layers, keras.layers.Dense(CLASSES)])
    model.compile(
        optimizer=keras.optimizers.Adam(LR),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    timer = EpochTimer()
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=True, verbose=0, callbacks=[timer])
    return {"epoch_times": timer.times, "train_loss": history.history["loss"][-1],
            "train_accuracy": history.history["accuracy"][-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 10k rows, 3 epochs, 1 repeat")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per repeat (default 5)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 3)")
    args = parser.parse_args(argv)
    rows = 10_000 if args.quick else 100_000
    epochs = args.epochs or (3 if args.quick else 5)
    repeats = args.repeats or (1 if args.quick else 3)

    with tempfile.TemporaryDirectory(prefix="rayfit-tf-bench-") as tmp:
        folder = Path(tmp)
        data = write_data(folder, rows)
        with np.load(data) as archive:
            x, y = archive["x"], archive["y"]
        x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)  # standardised, as rayfit does by default
        runners = {
            "Keras fit": lambda r: run_keras_fit(x, y, epochs),
            "rayfit": lambda r: run_rayfit(data, folder, epochs, f"tf_bench_r{r}", backend="tensorflow"),
        }
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in runners}
        names = list(runners)
        for r in range(repeats):
            for name in names[r % 2 :] + names[: r % 2]:
                out = runners[name](r)
                out["median_epoch_s"] = median_after_warmup(out["epoch_times"])
                results[name].append(out)
                print(f"[repeat {r + 1}/{repeats}] {name:<10} epochs "
                      + " ".join(f"{t:.3f}" for t in out["epoch_times"])
                      + f"  median {out['median_epoch_s']:.3f}s  train_accuracy {out['train_accuracy']:.4f}",
                      flush=True)

    medians = {n: statistics.median(o["median_epoch_s"] for o in results[n]) for n in names}
    best = {n: min(t for o in results[n] for t in (o["epoch_times"][1:] or o["epoch_times"])) for n in names}
    print(f"\n{rows} rows x {FEATURES}, MLP {HIDDEN}, batch {BATCH}, {epochs} epochs x {repeats} repeats")
    print("| framework | median epoch s | ratio | best epoch s | ratio |\n|---|---|---|---|---|")
    for n in names:
        print(f"| {n} | {medians[n]:.4f} | {medians[n] / medians['Keras fit']:.2f}x "
              f"| {best[n]:.4f} | {best[n] / best['Keras fit']:.2f}x |")
    print(f"rayfit / Keras fit = {medians['rayfit'] / medians['Keras fit']:.3f} (target <= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
