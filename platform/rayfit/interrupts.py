"""Ctrl-C that Python hands back in another shape: wrapped in an import's error, or dropped in a
weakref callback. Either way the command stops as interrupted."""

from __future__ import annotations

import _thread
import sys
import threading
from typing import Any


def from_ctrl_c(exc: BaseException) -> bool:
    """Whether `exc` is a KeyboardInterrupt or was raised from one: a Ctrl-C inside a compiled
    module's import (scipy's, under sklearn) comes back as ImportError("initialization failed")."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:  # a chain can loop back on itself
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def keep_dropped_ctrl_c() -> None:
    """Install a `sys.unraisablehook` that raises a Ctrl-C again in the main thread when Python
    would print and drop it: a KeyboardInterrupt inside a weakref callback or `__del__` (importlib's
    module-lock callbacks, during the imports) is "ignored" and the command would train on."""
    previous = sys.unraisablehook
    if getattr(previous, "__name__", "") == "reraise_ctrl_c":  # installed already
        return

    def reraise_ctrl_c(unraisable: Any) -> None:
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            # From another thread a moment later: called here, the interrupt would be raised (and
            # dropped for good) inside this hook.
            again = threading.Timer(0.05, _thread.interrupt_main)
            again.daemon = True
            again.start()
        else:
            previous(unraisable)

    sys.unraisablehook = reraise_ctrl_c
