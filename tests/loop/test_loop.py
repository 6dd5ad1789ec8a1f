"""The framework-free loop: event contract, event order, stop reasons, pause mid-epoch."""

from __future__ import annotations

import ast
import itertools
import time
from pathlib import Path

import pytest

import rayfit.loop as loop_package
from rayfit.loop import Callback, EpochLoop, Event
from rayfit.loop.epoch_clock import TIME_KEYS


def test_every_event_names_a_callback_method():
    for event in Event:
        assert callable(getattr(Callback, event.value)), event
    methods = {name for name in vars(Callback) if name.startswith("on_")}
    assert methods == {event.value for event in Event}


def test_loop_imports_no_framework():
    folder = Path(loop_package.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in getattr(node, "names", [])] + [getattr(node, "module", "") or ""]
            for name in names:
                assert name.split(".")[0] not in {"torch", "tensorflow", "ray", "mlflow"}, path




class RecordAll(Callback):
    """Overrides every method (the loop calls only overridden ones)."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def _add(self, name: str) -> None:
        self.events.append(name)

    def on_train_begin(self, loop): self._add("on_train_begin")
    def on_epoch_begin(self, loop): self._add("on_epoch_begin")
    def on_batch_begin(self, loop): self._add("on_batch_begin")
    def on_batch_end(self, loop): self._add("on_batch_end")
    def on_validation_begin(self, loop): self._add("on_validation_begin")
    def on_validation_end(self, loop, metrics): self._add("on_validation_end")
    def on_epoch_end(self, loop, metrics): self._add("on_epoch_end")
    def on_train_end(self, loop): self._add("on_train_end")


def test_event_order_and_history(scripted):
    recorder = RecordAll()
    loop = EpochLoop(scripted([0.5, 0.4], batches_per_epoch=2), [recorder], epochs=2)
    state = loop.train()
    epoch = ["on_epoch_begin"] + ["on_batch_begin", "on_batch_end"] * 2 + [
        "on_validation_begin", "on_validation_end", "on_epoch_end"]
    assert recorder.events == ["on_train_begin", *epoch, *epoch, "on_train_end"]
    assert state.stop_reason == "reached the last epoch (2)"
    assert [row["val_loss"] for row in state.history] == [0.5, 0.4]
    assert (state.epoch, state.step, state.batch_in_epoch) == (2, 4, 0)
    for key in ("epoch", "train_loss", "learning_rate", "epoch_time_s", "samples_per_s"):
        assert key in state.history[0]


class PauseAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, loop):
        if loop.state.step == self.step:
            loop.state.interrupt("test pause")


def test_interrupt_mid_epoch_skips_validation_and_resumes(scripted):
    backend = scripted([0.5, 0.4, 0.3], batches_per_epoch=4)
    loop = EpochLoop(backend, [PauseAt(step=6)], epochs=3)
    state = loop.train()
    assert (state.epoch, state.batch_in_epoch, state.interrupted) == (1, 2, True)
    assert len(state.history) == 1  # the half epoch was not validated
    # resume: the loop goes on from batch 2 of epoch 2, as load_checkpoint leaves it
    state.interrupted = state.should_stop = False
    resumed = EpochLoop(backend, [], epochs=3)
    resumed.state = state
    state = resumed.train()
    assert (state.epoch, state.step) == (3, 12)
    assert backend.weights == 12


def test_a_callback_stops_the_run_with_its_reason(scripted):
    class StopAfterFirst(Callback):
        def on_epoch_end(self, loop, metrics):
            loop.state.stop("enough")

    state = EpochLoop(scripted([0.5, 0.4]), [StopAfterFirst()], epochs=2).train()
    assert (state.epoch, state.stop_reason) == (1, "enough")


class SlowBackend:
    """Scripted backend whose data, steps and evaluation take known times."""

    FETCH_S, STEP_S, EVAL_S = 0.01, 0.02, 0.03

    def __init__(self, scripted) -> None:
        self.inner = scripted([0.5, 0.4, 0.3], batches_per_epoch=3)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def fetch_batch(self, batch):
        time.sleep(self.FETCH_S)
        return batch

    def train_step(self, batch, data):
        time.sleep(self.STEP_S)
        self.inner.train_step(batch, data)

    def evaluate(self, split):
        time.sleep(self.EVAL_S)
        return self.inner.evaluate(split)


class SlowCallbacks(Callback):
    """Records when each row is made; its batch and epoch-end work take known times."""

    BATCH_S, EPOCH_END_S = 0.005, 0.05

    def __init__(self) -> None:
        self.row_times: list[float] = []

    def on_batch_end(self, loop):
        time.sleep(self.BATCH_S)

    def on_epoch_end(self, loop, metrics):
        self.row_times.append(time.perf_counter())
        time.sleep(self.EPOCH_END_S)


def test_history_splits_each_epoch_into_data_steps_eval_and_callbacks(scripted):
    callbacks = SlowCallbacks()
    state = EpochLoop(SlowBackend(scripted), [callbacks], epochs=3).train()
    b = SlowBackend
    for i, row in enumerate(state.history):
        assert set(TIME_KEYS) <= set(row)
        # a sleep lasts at least its time; a busy machine may stretch it
        assert 3 * b.FETCH_S <= row["time_data_s"] < 3 * b.FETCH_S + 0.05
        assert 3 * b.STEP_S <= row["time_step_s"] < 3 * b.STEP_S + 0.05
        assert b.EVAL_S <= row["time_eval_s"] < b.EVAL_S + 0.05
        # epoch N's end callbacks run after its row is made: they count in row N+1
        callbacks_s = 3 * SlowCallbacks.BATCH_S + (SlowCallbacks.EPOCH_END_S if i else 0.0)
        assert callbacks_s <= row["time_callbacks_s"] < callbacks_s + 0.05
    # the parts add up to the wall time from one row to the next
    for row, (before, after) in zip(state.history[1:], itertools.pairwise(callbacks.row_times)):
        assert sum(row[key] for key in TIME_KEYS) == pytest.approx(after - before, abs=2e-3)
