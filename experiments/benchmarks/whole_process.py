"""The README's digits job as whole processes, the way a user runs it: rayfit against its peers.

What it measures: the wall time of each command below, from start to exit, each time in a fresh
empty folder (so rayfit creates its run folder and its MLflow SQLite store, as on a first run):

  rayfit            rayfit train experiments/digits_mlp.yaml    (the README's main command)
  rayfit --local    rayfit train experiments/digits_mlp.yaml --local
  Lightning         digits_peers.py lightning                   (the same job in PyTorch Lightning)
  Keras fit         digits_peers.py keras                       (the same job with Keras 3 fit)

The job (experiments/digits_mlp.yaml; digits_peers.py says how the peers match it): scikit-learn's
digits, an MLP 64 -> 256 -> 128 -> 10, AdamW with a cosine schedule, batch 64, at most 30 epochs
with early stopping on val_loss (patience 8), best-2 and last checkpoints, a CSV/history log of
each epoch, test metrics at the end; rayfit also tracks the run in MLflow and exports the model.
The commands run interleaved (the order rotates each repeat) over `--repeats` repeats; the table
gives each one's median and fastest wall time, and the two target ratios:
rayfit / Lightning and rayfit --local / Keras fit (each target: <= 1.00).

Run (from the repository root; Lightning comes with the bench extra):

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python experiments/benchmarks/whole_process.py                  # 3 repeats
    .venv/bin/python experiments/benchmarks/whole_process.py --only local keras --repeats 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = ROOT / "experiments" / "digits_mlp.yaml"
PEERS = Path(__file__).with_name("digits_peers.py")
RAYFIT = [sys.executable, "-m", "rayfit.cli", "train", EXPERIMENT.name]
JOBS = {  # key: (label, command)
    "default": ("rayfit", RAYFIT),
    "local": ("rayfit --local", [*RAYFIT, "--local"]),
    "lightning": ("Lightning", [sys.executable, str(PEERS), "lightning"]),
    "keras": ("Keras fit", [sys.executable, str(PEERS), "keras"]),
}
TARGETS = (("default", "lightning"), ("local", "keras"))


def run_once(command: list[str]) -> float:
    """Seconds from start to exit of `command` in a fresh folder holding the experiment file."""
    folder = Path(tempfile.mkdtemp(prefix="whole_process_"))
    try:
        shutil.copy(EXPERIMENT, folder)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "platform")}  # this checkout's rayfit
        started = time.perf_counter()
        done = subprocess.run(command, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return wall
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=list(JOBS), default=list(JOBS))
    args = parser.parse_args(argv)
    walls: dict[str, list[float]] = {key: [] for key in args.only}
    for repeat in range(args.repeats):
        order = args.only[repeat % len(args.only):] + args.only[: repeat % len(args.only)]
        for key in order:
            walls[key].append(run_once(JOBS[key][1]))
            print(f"repeat {repeat + 1}: {JOBS[key][0]:<15} {walls[key][-1]:7.1f} s", flush=True)
    median = {key: statistics.median(times) for key, times in walls.items()}
    print("\n| command | median s | fastest s |\n|---|---|---|")
    for key, times in walls.items():
        print(f"| {JOBS[key][0]} | {median[key]:.1f} | {min(times):.1f} |")
    for mine, peer in TARGETS:
        if mine in median and peer in median:
            print(f"{JOBS[mine][0]} / {JOBS[peer][0]} = {median[mine] / median[peer]:.2f} (target <= 1.00)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
