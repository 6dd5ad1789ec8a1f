"""The framework-free loop: event contract, event order, stop reasons, pause mid-epoch."""

from __future__ import annotations

import ast
from pathlib import Path

import rayfit.loop as loop_package
from rayfit.loop import Callback, EpochLoop, Event


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
