"""Checks made once a session is built and before anything is written: what would otherwise fail
only after the first epoch, when the run folder and the MLflow run exist already.

Monitored metric names are compared with the names the loop will report, each schedule is called
at its first position, and the model runs on two training rows (eval mode, no gradients, RNG state
kept), so a model that cannot take the data fails here with one line.
"""

from __future__ import annotations

import difflib
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from rayfit.backends import metrics
from rayfit.callbacks.lr_schedule import LRScheduler
from rayfit.errors import ConfigError, first_line
from rayfit.loop.loop import LOOP_METRICS

if TYPE_CHECKING:
    from rayfit.session import Session

FORWARD_ROWS = 2


def check(session: Session) -> None:
    """Raise ConfigError for the first problem found; change no weights and no RNG state."""
    cfg, backend = session.cfg, session.backend
    if cfg.trainer.accumulate > backend.batches_per_epoch:
        raise ConfigError(
            f"trainer.accumulate: {cfg.trainer.accumulate} micro-batches per optimizer step, but an "
            f"epoch has only {backend.batches_per_epoch} batch(es) of {cfg.trainer.batch_size}; set it "
            f"to at most {backend.batches_per_epoch}"
        )
    check_monitors(session)
    check_schedules(session)
    check_forward(session)


def reported_metrics(session: Session) -> list[str]:
    """The metric names each epoch will report, from the same functions that compute them."""
    backend = session.backend
    classification = session.data.info.task != "regression"
    train = metrics.train_metrics(classification, 0.0, 0.0, 1.0)
    split = metrics.split_metrics(classification, [1.0] * (3 if classification else 5), 1.0)
    val = [f"val_{name}" for name in split] if backend.has_split("val") else []
    return sorted({*LOOP_METRICS, *train, *val, *backend.memory_metrics()})


def check_monitors(session: Session) -> None:
    """Every monitor the run uses names a metric the run reports."""
    cfg = session.cfg
    used = []
    if cfg.early_stopping.enabled:
        used.append(("early_stopping.monitor", cfg.early_stopping.monitor))
    if cfg.schedule.name == "plateau":
        used.append(("schedule.monitor", cfg.schedule.monitor))
    # Best-K retention ranks by checkpoint.monitor; with the default (val_loss) and no validation
    # split there is nothing to rank and the last checkpoints are kept, as such a run expects. (Not
    # "was it set": a config that travels to Ray workers has every field set.)
    ck = cfg.checkpoint
    if ck.keep_best > 0 and ck.monitor != type(ck).model_fields["monitor"].default:
        used.append(("checkpoint.monitor", ck.monitor))
    names = reported_metrics(session)
    for field, monitor in used:
        if monitor not in names:
            close = difflib.get_close_matches(monitor, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{field}: {monitor!r} is not a metric this run reports; {hint}"
                f"it reports {', '.join(names)}"
            )


def check_schedules(session: Session) -> None:
    """Each schedule gives a finite, non-negative learning rate at its first position."""
    name = session.cfg.schedule.name
    for callback in session.loop.callbacks:
        if not isinstance(callback, LRScheduler):
            continue
        for schedule in callback.schedules:
            try:
                lr = schedule(0, [])
            except ConfigError:
                raise
            except Exception as exc:  # a user schedule may raise anything
                raise ConfigError(
                    f"schedule.name: {name!r} fails at its first position: {type(exc).__name__}: "
                    f"{first_line(exc)}"
                ) from exc
            if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
                raise ConfigError(
                    f"schedule.name: {name!r} gives learning rate {lr!r} at its first position; "
                    "expected a finite number >= 0"
                )


def check_forward(session: Session) -> None:
    """The model takes two training rows and returns one output per class (or one for
    regression). Skipped on torch's meta device (the driver's check-only session) and for
    streamed data (no rows are in memory yet)."""
    backend, data = session.backend, session.data
    rows = getattr(data, "x_train", None)
    if rows is None or str(getattr(backend, "device", "")) == "meta":
        return
    try:
        out = _outputs_keeping_rng(backend, session.cfg.backend, rows[:FORWARD_ROWS])
    except Exception as exc:  # a user model may raise anything
        raise ConfigError(
            f"model.type: {session.cfg.model.type!r} fails on a batch of {FORWARD_ROWS} rows with "
            f"{data.info.n_inputs} inputs: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    n, wanted = len(rows[:FORWARD_ROWS]), data.info.n_outputs
    shape = tuple(out.shape)
    if shape != (n, wanted) and not (wanted == 1 and shape == (n,)):
        what = "1 output (regression)" if wanted == 1 else f"{wanted} outputs (one per class)"
        raise ConfigError(
            f"model.type: {session.cfg.model.type!r} returns outputs of shape {shape} for {n} rows; "
            f"expected {what} per row, shape {(n, wanted)}"
        )


def _outputs_keeping_rng(backend: Any, framework: str, x: np.ndarray) -> Any:
    """backend.outputs(x) (eval mode, no gradients) with torch's RNG state put back afterwards,
    so a resumed run stays bitwise exact whatever the model does."""
    if framework != "torch":  # Keras in inference mode draws no random numbers
        return backend.outputs(x)
    import torch

    devices = [backend.device] if backend.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        return backend.outputs(x)
