"""SIGTERM/SIGINT pause the run at the next batch boundary, so a checkpoint can be written.

A second SIGINT falls through to Python's default and interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from rayfit.loop import Callback, EpochLoop


class GracefulStop(Callback):
    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}

    def on_train_begin(self, loop: EpochLoop) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread

        def handle(signum: int, frame: Any) -> None:
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            loop.state.interrupt(f"received {signal.Signals(signum).name}")

        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, handle)

    def on_train_end(self, loop: EpochLoop) -> None:
        self._restore()

    def on_exception(self, loop: EpochLoop, exc: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
