"""The checkpoint writer: writes in order, one pending at a time, below the loop's priority."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from rayfit.callbacks.background_writes import BackgroundWrites


def test_writes_run_in_order_and_an_error_comes_back_at_the_next_submit() -> None:
    writes, done = BackgroundWrites(), []
    for i in range(5):
        writes.submit(lambda i=i: done.append(i))
    writes.wait()
    assert done == [0, 1, 2, 3, 4]
    writes.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        writes.submit(lambda: done.append(5))
    writes.close()


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own nice value is Linux's")
def test_the_writer_thread_runs_below_the_loop() -> None:
    writes, seen = BackgroundWrites(), {}
    writes.submit(lambda: seen.update(nice=os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    writes.close()
    assert seen["nice"] == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == os.getpriority(os.PRIO_PROCESS, 0)
