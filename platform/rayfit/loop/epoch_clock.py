"""EpochClock: where an epoch's wall time goes (waiting for data, steps, evaluation, callbacks).

Each history row gets `time_data_s`, `time_step_s`, `time_eval_s` and `time_callbacks_s`; together
they cover the wall time from the previous row to this one. The callbacks of epoch N's end
(checkpoint, history and MLflow writes) run after row N is made, so they are counted in row N+1's
`time_callbacks_s`, with the batch callbacks of epoch N+1 (the progress bar, schedules, the NaN
check); the first row counts the train-begin callbacks. A run resumed mid-epoch counts that epoch
from the resume on.
"""

from __future__ import annotations

import time

PARTS = ("data", "step", "eval", "callbacks")
TIME_KEYS = tuple(f"time_{part}_s" for part in PARTS)


class EpochClock:
    """Adds up the measured parts; the callbacks' share is the rest of the wall time (the loop's
    own bookkeeping between them is a few clock reads and dictionary updates)."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        """Begin a new epoch's count now."""
        self._mark = time.perf_counter()
        self._spent = dict.fromkeys(PARTS[:-1], 0.0)

    def add(self, part: str, seconds: float) -> None:
        self._spent[part] += seconds

    def row(self) -> dict[str, float]:
        """The times since start() as history keys; starts the next epoch's count."""
        wall = time.perf_counter() - self._mark
        times = {**self._spent, "callbacks": max(0.0, wall - sum(self._spent.values()))}
        self.start()
        return {f"time_{part}_s": times[part] for part in PARTS}
