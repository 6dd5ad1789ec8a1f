"""A task's states and the transitions the service allows (anything else answers 409)."""

from __future__ import annotations

PENDING, RUNNING, PAUSING, PAUSED = "pending", "running", "pausing", "paused"
STOPPING, COMPLETED, FAILED, CANCELLED = "stopping", "completed", "failed", "cancelled"
STATES = (PENDING, RUNNING, PAUSING, PAUSED, STOPPING, COMPLETED, FAILED, CANCELLED)
FINAL = (COMPLETED, FAILED, CANCELLED)
ACTIVE = (PENDING, RUNNING, PAUSING, STOPPING)  # a Ray actor is (or is about to be) at work

# What a user may ask: (from states, to state, control request for the run or None) tried in turn.
# A run with no process (pending, paused) changes at once; a running one is asked through its
# control channel and settles when it has checkpointed and stopped. A failed run still has its
# checkpoints, so it may be resumed like a paused one.
ACTIONS: dict[str, list[tuple[tuple[str, ...], str, str | None]]] = {
    "pause": [((RUNNING,), PAUSING, "pause"), ((PENDING,), PAUSED, None)],
    "cancel": [((RUNNING, PAUSING), STOPPING, "cancel"), ((PENDING, PAUSED), CANCELLED, None)],
    "resume": [((PAUSED, FAILED), PENDING, None)],
}

# How a run's own outcome (run.json's status) maps onto the task's final state.
OUTCOMES = {"finished": COMPLETED, "paused": PAUSED, "cancelled": CANCELLED, "failed": FAILED}


def is_final(message: dict) -> bool:
    """A stream message saying the task has reached a final state."""
    return message.get("type") == "state" and message.get("state") in FINAL
