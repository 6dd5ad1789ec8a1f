"""The task registry on a real SQLite file: dense seq numbers per task, compare-and-set
transitions, replay after a seq, and everything still there for a new process (a restart)."""

from __future__ import annotations

from rayfit.service import states
from rayfit.service.registry import Registry


def test_messages_are_numbered_per_task_and_replayed_after_since(tmp_path):
    registry = Registry(f"sqlite:///{tmp_path}/r.db")
    registry.add("a", "run-a", {"name": "run-a"}, str(tmp_path / "a"), 3)
    registry.add("b", "run-b", {}, str(tmp_path / "b"), 3)
    registry.transition("a", (states.PENDING,), states.RUNNING, actor="actor-a", attempt=1)
    for epoch in (1, 2):
        registry.record_epoch("a", epoch, 3, {"loss": 1.0 / epoch}, events_seq=epoch + 1, extra={})
    assert [m["seq"] for m in registry.messages("a")] == [1, 2, 3, 4]
    assert [m["seq"] for m in registry.messages("b")] == [1]
    assert [(m["type"], m.get("epoch")) for m in registry.messages("a", since=2)] == [
        ("epoch_progress", 1), ("epoch_progress", 2)]
    assert [m["epoch"] for m in registry.messages("a", kind="epoch_progress")] == [1, 2]

    again = Registry(f"sqlite:///{tmp_path}/r.db")  # a restarted service
    run = again.get("a")
    assert (run.state, run.actor, run.attempt, run.epoch, run.events_seq, run.last_seq) == (
        states.RUNNING, "actor-a", 1, 2, 3, 4)
    assert run.metrics == {"loss": 0.5} and run.config == {"name": "run-a"}
    assert [r.id for r in again.list(states.PENDING)] == ["b"]


def test_a_transition_happens_only_from_the_states_allowed(tmp_path):
    registry = Registry(f"sqlite:///{tmp_path}/r.db")
    registry.add("a", "run-a", {}, str(tmp_path / "a"), 3)
    assert registry.transition("a", (states.RUNNING,), states.PAUSING) is None  # it is pending
    message = registry.transition("a", (states.PENDING,), states.CANCELLED, "cancel requested")
    assert message is not None and (message["state"], message["reason"], message["seq"]) == (
        states.CANCELLED, "cancel requested", 2)
    assert registry.transition("a", (states.PENDING,), states.RUNNING) is None  # too late to start it
    assert registry.transition("missing", (states.PENDING,), states.RUNNING) is None
    assert registry.get("a").state == states.CANCELLED and registry.get("missing") is None
