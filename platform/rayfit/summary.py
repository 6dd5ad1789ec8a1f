"""The one summary a run prints at its end: how it ended, its best epoch, test metrics, where
its outputs are."""

from __future__ import annotations

import math

from rayfit.callbacks.monitor import resolve_mode
from rayfit.config import ExperimentConfig
from rayfit.session import FitResult


def best_epoch(history: list[dict[str, float]], monitor: str, mode: str) -> dict[str, float] | None:
    """The history row with the best `monitor` value, in the direction the checkpoints use."""
    rows = [r for r in history if isinstance(r.get(monitor), float) and math.isfinite(r[monitor])]
    if not rows:
        return None
    best = max if resolve_mode(monitor, mode) == "max" else min
    return best(rows, key=lambda r: r[monitor])


def summary_lines(result: FitResult, cfg: ExperimentConfig, seconds: float) -> list[str]:
    """A few lines for people: what happened, the best epoch, test metrics, where things are."""
    epochs = len(result.history)
    lines = [f"{cfg.name} {result.status} after {epochs} epoch(s) in {seconds:.1f} s: {result.stop_reason}"]
    ck = cfg.checkpoint
    best = best_epoch(result.history, ck.monitor, ck.mode)
    if best is not None:
        lines.append(f"best {ck.monitor} {best[ck.monitor]:.4g} at epoch {int(best['epoch'])}")
    if result.test_metrics:
        lines.append("test: " + " ".join(f"{k.removeprefix('test_')}={v:.4g}" for k, v in result.test_metrics.items()))
    lines.append(f"outputs: {result.run_dir}")
    if result.status == "paused":
        lines.append("run the same command again to resume")
    return lines
