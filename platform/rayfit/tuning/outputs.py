"""What a sweep leaves in runs/SWEEP/: trials.csv, best.yaml (a runnable experiment of the best
trial), a PNG of every trial's curve and a parallel-coordinates PNG; all logged to the parent run."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from rayfit.config import ExperimentConfig  # noqa: E402
from rayfit.errors import CheckpointError, first_line  # noqa: E402
from rayfit.run_folder import RunFolder, write_atomic  # noqa: E402


@dataclass
class TrialOutcome:
    """One trial as its run folder and Tune left it."""

    run_dir: Path
    params: dict[str, Any]
    history: list[dict[str, float]]
    status: str  # the run folder's: finished, failed, running (stopped by the sweep), paused
    stop_reason: str
    mlflow_run_id: str | None = None
    best: float | None = None
    best_epoch: int | None = None

    @property
    def trial_id(self) -> str:
        return self.run_dir.name


def read_trial(run: RunFolder, params: dict[str, Any], error: BaseException | None, stopper: str) -> TrialOutcome:
    """A trial from its folder, once no process trains it (a trial Tune stopped may still be pausing
    its run; after a minute it is read as it is); a trial Tune stopped is marked running or paused."""
    status = {"status": "not started"}
    if run.exists():
        with suppress(CheckpointError), run.lock(wait_s=60.0):
            pass
        status = run.status()
    history = run.history()
    state = str(status.get("status"))
    if error is not None:
        reason = f"error: {first_line(error)}"
    elif state in ("finished", "failed"):
        reason = str(status.get("stop_reason"))
    else:
        reason = f"stopped by {stopper} after epoch {len(history)}"
    return TrialOutcome(run.path, params, history, state, reason, status.get("mlflow_run_id"))


def end_stopped(outcomes: list[TrialOutcome], uri: str | None) -> None:
    """Tune ends a trial it stops by ending its process, or the trial pauses its run: mark its
    folder stopped (it can still be resumed) and end its MLflow run."""
    for outcome in outcomes:
        if outcome.status not in ("running", "paused") or outcome.stop_reason.startswith("error"):
            continue
        run = RunFolder(outcome.run_dir)
        run.update(run.status() | {"status": "stopped", "stop_reason": outcome.stop_reason})
        if uri is not None and outcome.mlflow_run_id:
            MlflowClient(uri).set_terminated(outcome.mlflow_run_id, status="FINISHED")


def score(outcomes: list[TrialOutcome], metric: str, mode: str) -> TrialOutcome | None:
    """Fill each trial's best value and epoch; the best trial (None if no trial reported any)."""
    pick = max if mode == "max" else min
    for outcome in outcomes:
        rows = [row for row in outcome.history if metric in row]
        if rows:
            best = pick(rows, key=lambda row: row[metric])
            outcome.best, outcome.best_epoch = best[metric], int(best["epoch"])
    scored = [o for o in outcomes if o.best is not None]
    return pick(scored, key=lambda o: o.best) if scored else None


def write_table(outcomes: list[TrialOutcome], metric: str, path: Path) -> Path:
    rows = [{"trial": o.trial_id, **{f"config.{k}": v for k, v in o.params.items()}, f"best_{metric}": o.best,
             "best_epoch": o.best_epoch, "epochs": len(o.history), "stopped": o.stop_reason} for o in outcomes]
    write_atomic(path, pd.DataFrame(rows).to_csv(index=False))
    return path


def write_best(trial_run: RunFolder, sweep_cfg: ExperimentConfig, path: Path) -> Path:
    """The best trial's own config (no tune: section), named SWEEP_best and stored beside the sweep:
    `rayfit train` on it trains the same run again."""
    raw = trial_run.saved_config()
    raw["name"] = f"{sweep_cfg.name}_best"
    raw["tracking"]["storage"] = sweep_cfg.tracking.storage
    raw["trainer"]["progress"] = sweep_cfg.trainer.progress
    raw["tracking"]["wait_for_epochs"] = sweep_cfg.tracking.wait_for_epochs
    write_atomic(path, "# the best trial of sweep " + sweep_cfg.name + f" ({trial_run.path.name})\n"
                 + yaml.safe_dump(raw, sort_keys=False))
    return path


def plot_curves(outcomes: list[TrialOutcome], metric: str, best: TrialOutcome | None, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    for o in outcomes:
        rows = [row for row in o.history if metric in row]
        ax.plot([r["epoch"] for r in rows], [r[metric] for r in rows], marker="o", markersize=2,
                linewidth=2.5 if o is best else 1, alpha=1 if o is best else 0.5, label=o.trial_id if o is best else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of each trial (thick: best)")
    ax.grid(alpha=0.3)
    if best is not None:
        ax.legend()
    return save(fig, path)


def plot_parallel(outcomes: list[TrialOutcome], metric: str, path: Path) -> Path:
    """One vertical axis per sampled path and one for the metric, each scaled to [0, 1]; a line per
    trial coloured by its best metric (matplotlib has no parallel-coordinates plot of its own, and
    pandas' colours by a class, not by a value)."""
    scored = [o for o in outcomes if o.best is not None]
    names = sorted({k for o in scored for k in o.params}) + [metric]
    columns = []
    for name in names:
        values = [o.best if name == metric else o.params.get(name) for o in scored]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        codes = np.array(values if numeric else [sorted(map(str, values)).index(str(v)) for v in values], float)
        span = codes.max() - codes.min() if len(codes) else 0
        columns.append((codes - codes.min()) / span if span else np.full(len(codes), 0.5))
    fig, ax = plt.subplots(figsize=(1.8 * len(names) + 2, 4))
    colors = plt.cm.viridis(columns[-1]) if scored else []
    for i in range(len(scored)):
        ax.plot(range(len(names)), [c[i] for c in columns], color=colors[i], alpha=0.8)
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_yticks([])
    ax.set_title(f"config against best {metric} (yellow: highest)")
    return save(fig, path)


def save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def close_parent(uri: str, parent_run_id: str, metric: str, best: TrialOutcome | None, files: list[Path]) -> None:
    """Log the sweep's outputs to its MLflow run, tag the best trial, and end the run."""
    client = MlflowClient(uri)
    if best is not None and best.best is not None:
        client.log_metric(parent_run_id, f"best_{metric}", best.best)
        client.set_tag(parent_run_id, "rayfit.best_trial", best.trial_id)
        if best.mlflow_run_id:
            client.set_tag(parent_run_id, "rayfit.best_trial_run_id", best.mlflow_run_id)
    for path in files:
        client.log_artifact(parent_run_id, str(path), artifact_path="sweep")
    client.set_terminated(parent_run_id, status="FINISHED")
