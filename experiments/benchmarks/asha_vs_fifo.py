"""ASHA against FIFO on digits: the same sampled configs (27 by default, up to 27 epochs,
reduction factor 3, grace period 1), for several seeds of the sampler (10 by default: one of the
270 validation rows is 0.37 point, so a mean over fewer seeds moves by tenths of a point between runs).

For each seed and scheduler it reports the best validation accuracy found, the epochs spent (summed
over trials, from trials.csv), the wall time of the whole sweep (after `ray.init`), and the fixed
cost per trial: (wall x concurrency - the trials' own epoch time) / trials, i.e. what a trial costs
beyond its epochs (actor start, data, model, MLflow off). The target of issue 10: ASHA within 0.5
point of FIFO's best with at most 25% of its epochs.

    .venv/bin/python experiments/benchmarks/asha_vs_fifo.py [--samples 27] [--epochs 27] [--seeds 0 ... 9] [--keep DIR]

With --keep DIR the sweeps stay in DIR/runs/ (FIFO's are what asha_replay.py replays).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import ray
import yaml

from rayfit.tuning.sweep import load_sweep, plan, run_sweep

SPACE = {
    "optimizer.lr": {"loguniform": [1.0e-4, 1.0e-1]},
    "model.dropout": {"uniform": [0.0, 0.5]},
    "model.hidden_units": {"choice": [[64], [256, 128], [512, 256, 128]]},
    "trainer.batch_size": {"choice": [32, 64, 128]},
}


def sweep(folder: Path, scheduler: str, seed: int, samples: int, epochs: int) -> dict[str, float]:
    name = f"{scheduler}-s{seed}"
    experiment = {
        "name": name,
        "data": {"source": "sklearn:digits", "val_fraction": 0.15, "test_fraction": 0.2},
        "model": {"type": "mlp"},
        "optimizer": {"name": "adamw"},
        "trainer": {"epochs": epochs, "seed": 0, "progress": "none"},
        "tracking": {"enabled": False, "storage": str(folder / "runs")},
        "scaling": {"num_workers": 0},
        "tune": {"metric": "val_accuracy", "mode": "max", "num_samples": samples, "search_space": SPACE,
                 "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3} if scheduler == "asha"
                 else {"name": "fifo"}, "searcher": {"name": "random", "seed": seed}},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(experiment))
    cfg = load_sweep(path)
    concurrency = plan(cfg, ray.cluster_resources()["CPU"]).concurrency
    started = time.perf_counter()
    run_sweep(cfg)
    wall = time.perf_counter() - started
    table = pd.read_csv(folder / "runs" / name / "trials.csv")
    epoch_time = sum(
        row["epoch_time_s"] for trial in table["trial"]
        for row in json.loads((folder / "runs" / name / "trials" / trial / "history.json").read_text())
    )
    return {"best": float(table["best_val_accuracy"].max()), "epochs": int(table["epochs"].sum()), "wall": wall,
            "fixed": (wall * concurrency - epoch_time) / len(table)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=27)
    parser.add_argument("--epochs", type=int, default=27)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--keep", type=Path, default=None, help="keep the sweeps in this folder")
    args = parser.parse_args()
    if args.keep is not None and (args.keep / "runs").exists():
        parser.error(f"{args.keep / 'runs'} exists: --keep takes a new folder (a kept sweep would be resumed, not run)")
    ray.init(include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            for scheduler in ("fifo", "asha"):
                result = sweep(args.keep or Path(tmp), scheduler, seed, args.samples, args.epochs)
                rows.append({"seed": seed, "scheduler": scheduler, **result})
                print(json.dumps(rows[-1]), flush=True)
    frame = pd.DataFrame(rows)
    print(f"\n{args.samples} configs x up to {args.epochs} epochs, seeds {args.seeds}, "
          f"{ray.cluster_resources()['CPU']:g} CPUs")
    print(f"{'scheduler':<10}{'best val acc':>14}{'epochs':>9}{'wall s':>9}{'fixed s/trial':>15}")
    for scheduler in ("fifo", "asha"):
        part = frame[frame["scheduler"] == scheduler]
        print(f"{scheduler:<10}{statistics.mean(part['best']):>14.4f}{statistics.mean(part['epochs']):>9.0f}"
              f"{statistics.mean(part['wall']):>9.1f}{statistics.mean(part['fixed']):>15.2f}")
    fifo, asha = (frame[frame["scheduler"] == s].set_index("seed") for s in ("fifo", "asha"))
    gaps = 100 * (asha["best"] - fifo["best"])
    print(f"ASHA - FIFO best, points: {statistics.mean(gaps):+.2f} (per seed {[round(d, 2) for d in gaps]}, "
          f"{sum(gaps > -0.5)} of {len(gaps)} within 0.5); "
          f"ASHA epochs / FIFO epochs: {statistics.mean(asha['epochs'] / fifo['epochs']):.1%}")


if __name__ == "__main__":
    main()
