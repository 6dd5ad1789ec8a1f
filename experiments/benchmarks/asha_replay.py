"""ASHA replayed on FIFO's full curves: would another ranking or grace period have kept FIFO's best
trial within the epoch budget? (Issue 10's target: within 0.5 point of FIFO's best with at most
25% of its epochs.)

Input: FIFO sweeps kept by `asha_vs_fifo.py --keep DIR` (DIR/runs/fifo-sN/trials/*/history.json:
every trial's 27 epochs). Each variant replays Ray Tune's own ASHA bracket (the class
`ASHAScheduler`, with its brackets) over those curves: the trials in the order Tune ran them, 2 at a
time, each costing `--fixed` seconds before its first epoch and its recorded epoch times after.
What a trial would have reported at each epoch is what it did report under FIFO, so the replay
shows what the schedule decides, without the run-to-run noise of training again. For each seed:
FIFO's best trial (its best epoch and the mean of its last 5), its rank among the trials at epochs
1, 3 and 9, and per variant the best validation accuracy kept and the share of FIFO's epochs spent;
a last row has the means over the sweeps.

    .venv/bin/python experiments/benchmarks/asha_vs_fifo.py --keep /tmp/asha
    .venv/bin/python experiments/benchmarks/asha_replay.py /tmp/asha/runs/fifo-s*
"""

from __future__ import annotations

import argparse
import heapq
import json
import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

VARIANTS = {  # name: (metric ranked at the rungs, its mode, grace period, brackets)
    "val_accuracy, grace 1": ("val_accuracy", "max", 1, 1),
    "val_loss, grace 1": ("val_loss", "min", 1, 1),
    "val_accuracy, grace 2": ("val_accuracy", "max", 2, 1),
    "val_loss, grace 2": ("val_loss", "min", 2, 1),
    "val_accuracy, grace 3": ("val_accuracy", "max", 3, 1),
    "val_accuracy, grace 1, 2 brackets": ("val_accuracy", "max", 1, 2),
    "val_loss, grace 1, 3 brackets": ("val_loss", "min", 1, 3),
}
DRAWS = 30  # with several brackets Ray draws each trial's at random: the mean over this many draws


def replay(curves: list[list[dict[str, Any]]], metric: str, mode: str, grace: int, brackets: int,
           fixed: float, draw: int = 0, slots: int = 2) -> tuple[float, int]:
    """The best val_accuracy seen and the epochs run under ASHA (reduction factor 3, max_t 27)."""
    np.random.seed(draw)  # Ray draws a trial's bracket from numpy's global generator
    scheduler = ASHAScheduler(time_attr="epoch", metric=metric, mode=mode, max_t=len(curves[0]),
                              grace_period=grace, reduction_factor=3, brackets=brackets, stop_last_trials=False)
    trials = [SimpleNamespace(trial_id=str(i)) for i in range(len(curves))]
    events: list[tuple[float, int, int]] = []
    started = 0
    spent, best = 0, 0.0

    def start(now: float) -> None:
        nonlocal started
        if started < len(curves):
            scheduler.on_trial_add(None, trials[started])
            heapq.heappush(events, (now + fixed + curves[started][0]["epoch_time_s"], started, 1))
            started += 1

    for _ in range(slots):
        start(0.0)
    while events:
        now, trial, epoch = heapq.heappop(events)
        row = curves[trial][epoch - 1]
        spent += 1
        best = max(best, row["val_accuracy"])
        action = scheduler.on_trial_result(None, trials[trial], {"epoch": epoch, metric: row[metric]})
        if action == TrialScheduler.STOP or epoch == len(curves[trial]):
            start(now)
        else:
            heapq.heappush(events, (now + curves[trial][epoch]["epoch_time_s"], trial, epoch + 1))
    return best, spent


def rank_at(curves: list[list[dict[str, Any]]], trial: int, epoch: int) -> int:
    values = sorted((c[epoch - 1]["val_accuracy"] for c in curves), reverse=True)
    return values.index(curves[trial][epoch - 1]["val_accuracy"]) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", type=Path, nargs="+", help="FIFO sweep folders (runs/fifo-sN)")
    parser.add_argument("--fixed", type=float, default=0.7,
                        help="seconds a trial costs before its first epoch (asha_vs_fifo.py's fixed cost per trial)")
    args = parser.parse_args()
    print("| sweep | FIFO best (trial, mean of last 5) | its rank at epochs 1, 3, 9 | "
          + " | ".join(VARIANTS) + " |")
    print("|---" * (3 + len(VARIANTS)) + "|")
    totals: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}  # (gap, share) per sweep
    for folder in args.sweeps:
        curves = [json.loads((d / "history.json").read_text()) for d in sorted((folder / "trials").iterdir())]
        total = sum(len(c) for c in curves)
        best_of = [max(r["val_accuracy"] for r in c) for c in curves]
        top = max(range(len(curves)), key=lambda i: best_of[i])
        last5 = statistics.mean(r["val_accuracy"] for r in curves[top][-5:])
        cells = []
        for name, (metric, mode, grace, brackets) in VARIANTS.items():
            runs = [replay(curves, metric, mode, grace, brackets, args.fixed, draw)
                    for draw in range(DRAWS if brackets > 1 else 1)]
            gap = statistics.mean(100 * (best - best_of[top]) for best, _ in runs)
            share = statistics.mean(spent for _, spent in runs) / total
            totals[name].append((gap, share))
            cells.append(f"{gap:+.2f} pt, {share:.0%}")
        ranks = ", ".join(str(rank_at(curves, top, e)) for e in (1, 3, 9))
        print(f"| {folder.name} | {best_of[top]:.4f} ({top}, {last5:.4f}) | {ranks} of {len(curves)} | "
              + " | ".join(cells) + " |")
    means = (f"{statistics.mean(gap for gap, _ in sweeps):+.2f} pt, {statistics.mean(share for _, share in sweeps):.0%}"
             for sweeps in totals.values())
    print(f"| mean of {len(args.sweeps)} | | | " + " | ".join(means) + " |")


if __name__ == "__main__":
    main()
