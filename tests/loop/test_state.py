"""LoopState: what a checkpoint keeps of it."""

from __future__ import annotations

import json

from rayfit.loop.state import LoopState


def test_each_save_holds_the_whole_history_with_the_last_row_as_it_is_now() -> None:
    state = LoopState()
    for epoch in range(1, 5):
        state.history.append({"epoch": float(epoch), "loss": 1.0 / epoch})
        saved = state.state_dict()
        assert json.loads(saved["history"]) == state.history
    state.history[-1]["added_by_a_callback"] = 1.0  # rows are encoded once, but not the last: it may still change
    assert json.loads(state.state_dict()["history"])[-1] == state.history[-1]
    assert set(saved) == {"epoch", "step", "batch_in_epoch", "epoch_elapsed_s", "history", "stop_reason",
                          "should_stop", "interrupted", "failed", "cancelled"}


def test_a_restored_state_saves_its_own_history_not_the_one_before() -> None:
    before = LoopState()
    before.history = [{"epoch": float(e), "loss": 9.0} for e in range(1, 6)]
    before.state_dict()
    saved = LoopState()
    saved.history = [{"epoch": 1.0, "loss": 0.5}, {"epoch": 2.0, "loss": 0.25}]
    before.load_state_dict(saved.state_dict())
    before.history.append({"epoch": 3.0, "loss": 0.125})
    assert json.loads(before.state_dict()["history"]) == [
        {"epoch": 1.0, "loss": 0.5}, {"epoch": 2.0, "loss": 0.25}, {"epoch": 3.0, "loss": 0.125}]


def test_a_history_put_in_place_of_another_is_saved_as_it_is() -> None:
    state = LoopState()
    state.history = [{"epoch": 1.0, "loss": 1.0}, {"epoch": 2.0, "loss": 2.0}]
    state.state_dict()
    state.history = [{"epoch": 1.0, "loss": 0.5}, {"epoch": 2.0, "loss": 0.25}, {"epoch": 3.0, "loss": 0.125}]
    assert json.loads(state.state_dict()["history"]) == state.history
