"""LoopState: where the loop is, what it has seen, and whether (and why) it must stop."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoopState:
    epoch: int = 0  # epochs completed
    step: int = 0  # batches completed over the whole run
    batch_in_epoch: int = 0  # batches completed in the current epoch
    epoch_elapsed_s: float = 0.0  # training time spent in the current epoch before a resume
    history: list[dict[str, float]] = field(default_factory=list)
    stop_reason: str | None = None
    should_stop: bool = False  # finish cleanly: the run is over
    interrupted: bool = False  # pause: a checkpoint is written and the run resumes later
    failed: bool = False  # the run cannot go on (for example a NaN loss)
    cancelled: bool = False  # stopped on request: checkpoints are kept, the run does not resume
    # which history list, and its rows already turned into JSON: all but the last (a callback may still add to it)
    _encoded: tuple[list[dict[str, float]] | None, list[str]] = field(
        default_factory=lambda: (None, []), init=False, repr=False, compare=False)

    def stop(self, reason: str) -> None:
        """End the run after the current batch or epoch; callbacks call this, never the loop's own code."""
        if not self.should_stop:
            self.should_stop, self.stop_reason = True, reason

    def interrupt(self, reason: str) -> None:
        """Stop at the next batch boundary and keep the run resumable."""
        self.interrupted = True
        self.stop(reason)

    def fail(self, reason: str) -> None:
        """Stop at once; the run ends with an error and no further checkpoint."""
        self.failed = True
        self.stop(reason)

    def cancel(self, reason: str) -> None:
        """Stop at the next batch boundary for good (a cancel request); nothing more is trained."""
        self.cancelled = True
        self.stop(reason)

    @property
    def halted(self) -> bool:
        """Stopped in a way that ends the epoch at once (pause, cancel, failure), not at its end."""
        return self.should_stop and (self.interrupted or self.failed or self.cancelled)

    @property
    def mid_epoch(self) -> bool:
        return self.batch_in_epoch > 0

    def state_dict(self) -> dict[str, Any]:
        """The fields, the history as JSON text: a checkpoint's pickler calls back into Python for
        every object, so a list of per-epoch dicts grew the cost of each save with the epochs. Each
        row is encoded once (all of them each save took 2 ms at 150 epochs)."""
        encoded_of, encoded = self._encoded
        if encoded_of is not self.history:  # a history put in place of the one encoded
            encoded = []
        rows = encoded + [json.dumps(row) for row in self.history[len(encoded):]]
        self._encoded = (self.history, rows[:-1])
        fields = {k: v for k, v in vars(self).items() if k != "_encoded"}
        return fields | {"history": "[" + ", ".join(rows) + "]"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if key != "_encoded":
                setattr(self, key, value)
        if isinstance(self.history, str):  # a list in checkpoints before JSON
            self.history = json.loads(self.history)
