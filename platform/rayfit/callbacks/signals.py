"""SIGTERM/SIGINT ask the run to pause at the next batch boundary, through its control channel,
so a checkpoint is written. A second signal falls through to Python's default and stops at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from rayfit.control import RunControl
from rayfit.loop import Callback, EpochLoop

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def signals_pause(control: RunControl, persist: bool) -> Iterator[None]:
    """While inside, the first SIGTERM/SIGINT requests a pause (`persist`: through the run folder,
    for a loop that runs in other processes). Only the main thread can install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: Any) -> None:
        signal.signal(signum, previous.get(signum, signal.SIG_DFL))
        control.request("pause", f"received {signal.Signals(signum).name}", persist=persist)

    for sig in SIGNALS:
        previous[sig] = signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class GracefulStop(Callback):
    """Signals pause an in-process run for as long as it trains."""

    def __init__(self, control: RunControl) -> None:
        self.control = control
        self._handlers = contextlib.ExitStack()

    def on_train_begin(self, loop: EpochLoop) -> None:
        self._handlers.enter_context(signals_pause(self.control, persist=False))

    def on_train_end(self, loop: EpochLoop) -> None:
        self._handlers.close()

    def on_exception(self, loop: EpochLoop, exc: BaseException) -> None:
        self._handlers.close()
