"""One write at a time on a background thread, so the loop does not wait for the disk.

A checkpoint is serialized on the loop's thread; writing it, the fsync, the index and retention
then overlap the next epoch. Before the next write, and whenever a reader needs the
files (end of training, a report to Ray), `wait()` finishes the pending one and raises its error.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("rayfit")


class BackgroundWrites:
    """A single writer thread: submissions run in order, at most one is pending at a time."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def submit(self, write: Callable[[], None]) -> None:
        self.wait()  # one pending write at most: bounded memory, and its error surfaces now
        if self._pool is None:  # created on first use: a loop may never save
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rayfit-checkpoint",
                                            initializer=_below_the_loop)
        self._pending = self._pool.submit(write)

    def wait(self) -> None:
        """Block until the pending write is on disk; re-raise what it raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        self.wait()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _below_the_loop() -> None:
    """The writer thread at a lower priority than the loop (Linux: a thread is a task with a nice
    value of its own), as the MLflow tracking process: see `rayfit.tracking_process.serve`."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + 10))
    except OSError as exc:  # a sandbox may refuse it: the writes go on at the loop's priority
        log.debug("the checkpoint writer keeps the loop's priority: %s", exc)
