"""Acts on the run's control channel: pause or cancel at the next batch boundary (or epoch end).

Rank 0 reads the channel; with several ranks the request goes to all of them through a sum over
ranks, so every rank stops at the same batch (`ray.train.report` and the collectives are barriers).
"""

from __future__ import annotations

import time

from rayfit.control import ACTIONS, RunControl
from rayfit.loop import Callback, EpochLoop


class ControlRequests(Callback):
    POLL_S = 0.2  # how often rank 0 looks at the request file (a signal's request is seen at once)

    def __init__(self, control: RunControl | None, world_size: int) -> None:
        self.control = control  # None on the ranks that do not read the channel
        self.world_size = world_size
        self._next_poll = 0.0
        self._acted = False

    def on_batch_end(self, loop: EpochLoop) -> None:
        self._check(loop)

    def on_epoch_end(self, loop: EpochLoop, metrics: dict[str, float]) -> None:
        self._check(loop)

    def _check(self, loop: EpochLoop) -> None:
        request = self._read()
        code = ACTIONS.index(request[0]) + 1 if request else 0
        if self.world_size > 1:
            code = round(loop.backend.sum_over_ranks([float(code)])[0])
        if not code:
            return
        action = ACTIONS[code - 1]
        reason = request[1] if request else f"{action} requested"
        if action == "pause":
            loop.state.interrupt(reason)
        else:
            loop.state.cancel(reason)
        self._acted = True

    def _read(self) -> tuple[str, str] | None:
        if self.control is None:
            return None
        now = time.monotonic()
        if now < self._next_poll:
            return self.control.pending(read_file=False)
        self._next_poll = now + self.POLL_S
        return self.control.pending()

    def on_train_end(self, loop: EpochLoop) -> None:
        if self._acted and self.control is not None:
            self.control.clear()  # the resumed run must not pause again on the same request
