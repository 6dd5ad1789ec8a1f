"""EpochLoop: epochs -> batches -> validate -> callbacks, written once for every framework.

The backend owns tensors, the model and the data; the loop owns the order of things and the
LoopState. Every feature (checkpoints, early stopping, schedules, logging) is a callback.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rayfit.loop.callback import Callback
from rayfit.loop.epoch_clock import TIME_KEYS, EpochClock
from rayfit.loop.events import Event
from rayfit.loop.state import LoopState

log = logging.getLogger("rayfit")
# What end_epoch adds to the backend's train, validation and memory metrics each epoch.
LOOP_METRICS = ("epoch", "learning_rate", "epoch_time_s", "samples_per_s", *TIME_KEYS)


class TrainingFailed(Exception):
    """The run stopped on an unrecoverable condition (for example a NaN loss)."""


class Backend(Protocol):
    """What a framework supplies: steps, metrics and state. Metrics are plain floats."""

    batches_per_epoch: int
    train_samples: int
    checkpoint_suffix: str  # the extension of its checkpoint files, e.g. ".pt"

    def begin_epoch(self, epoch: int) -> None: ...
    def reset_train_metrics(self) -> None: ...
    def fetch_batch(self, batch: int) -> Any: ...  # the batch's data, as train_step takes it
    def train_step(self, batch: int, data: Any) -> None: ...
    def train_metrics(self) -> dict[str, float]: ...
    def running_metrics(self) -> dict[str, float]: ...
    def last_loss(self) -> float: ...
    def evaluate(self, split: str) -> dict[str, float]: ...
    def has_split(self, split: str) -> bool: ...
    def learning_rates(self) -> list[float]: ...
    def set_learning_rates(self, lrs: list[float]) -> None: ...
    def memory_metrics(self) -> dict[str, float]: ...
    def sum_over_ranks(self, values: list[float]) -> list[float]: ...
    def get_weights(self) -> Any: ...
    def set_weights(self, weights: Any) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def checkpoint_bytes(self, payload: dict[str, Any]) -> bytes: ...  # the file's content, serialized now
    def load_file(self, path: Path) -> dict[str, Any]: ...


class EpochLoop:
    """Runs `epochs` epochs of `backend` steps, calling `callbacks` at each Event."""

    def __init__(self, backend: Backend, callbacks: list[Callback], epochs: int) -> None:
        self.backend = backend
        self.callbacks = list(callbacks)
        self.epochs = epochs
        self.state = LoopState()
        self.clock = EpochClock()
        # Only callbacks that override a method are called for it: the per-batch events stay
        # free for the callbacks that do not care about batches.
        self._listeners = {
            event: [
                getattr(cb, event.value)
                for cb in self.callbacks
                if getattr(type(cb), event.value) is not getattr(Callback, event.value)
            ]
            for event in Event
        }

    def dispatch(self, event: Event, *args: Any) -> None:
        for method in self._listeners[event]:
            method(self, *args)

    # ----------------------------------------------------------------------------- running

    def train(self) -> LoopState:
        """Train until the last epoch or until a callback stops the run; say why it stopped."""
        state = self.state
        self.clock.start()
        try:
            self.dispatch(Event.TRAIN_BEGIN)
            while state.epoch < self.epochs and not state.should_stop:
                self.train_epoch()
                if state.halted and state.mid_epoch:
                    break  # paused, cancelled or failed inside the epoch: no validation of half an epoch
                metrics = self.end_epoch()
                self.dispatch(Event.EPOCH_END, metrics)
            if not state.should_stop:
                state.stop(f"reached the last epoch ({self.epochs})")
        except BaseException as exc:
            self.dispatch(Event.EXCEPTION, exc)
            raise
        self.dispatch(Event.TRAIN_END)
        log.info("training stopped: %s", state.stop_reason)
        if state.failed:
            raise TrainingFailed(state.stop_reason)
        return state

    def train_epoch(self) -> None:
        """Run the batches of the current epoch from where it stands (a resume may start mid-way)."""
        state, backend = self.state, self.backend
        if not state.mid_epoch:
            backend.reset_train_metrics()
            state.epoch_elapsed_s = 0.0
        self.dispatch(Event.EPOCH_BEGIN)
        preparing = time.perf_counter()
        backend.begin_epoch(state.epoch)  # the epoch's shuffle or data stream: waiting for data
        started = time.perf_counter()
        data_s, step_s = started - preparing, 0.0
        started -= state.epoch_elapsed_s
        try:
            for batch in range(state.batch_in_epoch, backend.batches_per_epoch):
                self.dispatch(Event.BATCH_BEGIN)
                fetching = time.perf_counter()
                data = backend.fetch_batch(batch)
                stepping = time.perf_counter()
                backend.train_step(batch, data)
                now = time.perf_counter()
                data_s += stepping - fetching
                step_s += now - stepping
                state.batch_in_epoch = batch + 1
                state.step += 1
                state.epoch_elapsed_s = now - started
                self.dispatch(Event.BATCH_END)
                if state.halted:
                    return
        finally:
            self.clock.add("data", data_s)
            self.clock.add("step", step_s)

    def end_epoch(self) -> dict[str, float]:
        """Close the epoch: train and validation metrics, timing (see EpochClock), memory; append
        to history."""
        state, backend = self.state, self.backend
        elapsed = state.epoch_elapsed_s
        summing = time.perf_counter()
        # a collective with several ranks: waiting for the slower ones counts as stepping
        metrics = {"epoch": float(state.epoch + 1), **backend.train_metrics()}
        self.clock.add("step", time.perf_counter() - summing)
        metrics.update(self.validate())
        metrics["learning_rate"] = backend.learning_rates()[0]
        metrics["epoch_time_s"] = elapsed
        metrics["samples_per_s"] = backend.train_samples / elapsed if elapsed > 0 else 0.0
        metrics.update(backend.memory_metrics())
        metrics.update(self.clock.row())
        state.history.append(metrics)
        state.epoch += 1
        state.batch_in_epoch = 0
        return metrics

    def validate(self) -> dict[str, float]:
        """Metrics on the validation split, prefixed val_ (empty when there is no such split)."""
        if not self.backend.has_split("val"):
            return {}
        self.dispatch(Event.VALIDATION_BEGIN)
        evaluating = time.perf_counter()
        metrics = {f"val_{k}": v for k, v in self.backend.evaluate("val").items()}
        self.clock.add("eval", time.perf_counter() - evaluating)
        self.dispatch(Event.VALIDATION_END, metrics)
        return metrics

    def evaluate(self) -> dict[str, float]:
        """Metrics on the test split, prefixed test_ (empty when there is no test split)."""
        if not self.backend.has_split("test"):
            return {}
        return {f"test_{k}": v for k, v in self.backend.evaluate("test").items()}

    # ------------------------------------------------------------------------- checkpoints

    def checkpoint_payload(self) -> dict[str, Any]:
        """Everything exact resume needs, as plain data plus the backend's own state. The RNG
        states (1,249 integers) are JSON text: a checkpoint's pickler calls back into Python for
        every object it writes, and one string is one object (JSON round-trips them exactly)."""
        return {
            "loop": self.state.state_dict(),
            "backend": self.backend.state_dict(),
            "callbacks": {cb.state_key: cb.state_dict() for cb in self.callbacks},
            "rng": json.dumps({"python": random.getstate(), "numpy": _numpy_rng_state()}),
        }

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        """Restore loop, backend, callbacks and RNG from `path`; returns the whole payload."""
        payload = self.backend.load_file(path)
        self.state.load_state_dict(payload["loop"])
        if self.state.interrupted:  # a paused run goes on from where it was stopped
            self.state.interrupted = self.state.should_stop = False
            self.state.stop_reason = None
        self.backend.load_state_dict(payload["backend"])
        for cb in self.callbacks:
            if cb.state_key in payload["callbacks"]:
                cb.load_state_dict(payload["callbacks"][cb.state_key])
        rng = payload["rng"]
        rng = json.loads(rng) if isinstance(rng, str) else rng  # a dict in checkpoints before JSON
        random.setstate(_as_tuple(rng["python"]))
        np.random.set_state(_numpy_rng_tuple(rng["numpy"]))
        return payload


def _numpy_rng_state() -> list[Any]:
    """numpy's global RNG state as plain lists/ints, so a weights-only loader accepts it."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _numpy_rng_tuple(state: list[Any]) -> tuple[Any, ...]:
    name, keys, pos, has_gauss, cached = state
    return (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)


def _as_tuple(value: Any) -> Any:
    """Lists back to tuples, recursively: random.setstate wants the tuples it gave."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
