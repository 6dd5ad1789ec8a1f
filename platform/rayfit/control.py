"""The control channel of a run: ask it to pause or cancel at its next batch boundary, from this
thread, another thread or another process (the CLI, a sweep, the service).

A request is a small JSON file in the run folder plus a flag in this process. A file, not a Ray
actor: rank 0 always sees its run folder (it writes its checkpoints there), with or without Ray,
and a request made before the run starts, or while its driver restarts, is still there to read.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("rayfit")
CONTROL_FILE = "control.json"
ACTIONS = ("pause", "cancel")


class RunControl:
    """Requests for one run folder. `pending()` is cheap: it reads the file only when it changed."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / CONTROL_FILE
        self._local: tuple[str, str] | None = None  # a request of this process (a signal)
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._from_file: tuple[str, str] | None = None

    def request(self, action: str, reason: str | None = None, persist: bool = True) -> None:
        """Ask the run to `action` ('pause' or 'cancel'); `persist=False` keeps it in this process."""
        if action not in ACTIONS:
            raise ValueError(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
        reason = reason or f"{action} requested"
        self._local = (action, reason)
        if persist:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{CONTROL_FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"action": action, "reason": reason, "time": time.time()}))
            os.replace(tmp, self.path)

    def pending(self, read_file: bool = True) -> tuple[str, str] | None:
        """(action, reason) of a request, or None; a cancel outranks a pause. `read_file=False`
        answers from this process's flag and the file as last read (no system call)."""
        from_file = self._read_file() if read_file else self._from_file
        requests = [r for r in (self._local, from_file) if r is not None]
        requests.sort(key=lambda r: ACTIONS.index(r[0]), reverse=True)
        return requests[0] if requests else None

    def _read_file(self) -> tuple[str, str] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen = self._from_file = None
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        if key == self._seen:
            return self._from_file
        self._seen = key
        try:  # the file may come from anyone who can write the run folder: read it as untrusted
            raw = json.loads(self.path.read_text())
            action, reason = raw["action"], str(raw.get("reason") or f"{raw['action']} requested")[:200]
            if action not in ACTIONS:
                raise ValueError(action)
            self._from_file = (action, reason)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: ignored an unreadable control request (%s)", self.path, exc)
            self._from_file = None
        return self._from_file

    def clear(self) -> None:
        """Forget every request: called once the run has acted on one."""
        self._local = self._from_file = self._seen = None
        self.path.unlink(missing_ok=True)
