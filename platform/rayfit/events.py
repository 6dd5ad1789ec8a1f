"""A run's event stream: start, throttled batch progress, every epoch's metrics, end.

Rank 0 appends each event to `events.jsonl` in the run folder, numbered by `seq`, and hands it to
the sinks of its own process (the progress display, user functions). A caller whose loop runs
elsewhere (Ray Train workers) follows the file instead. A file rather than a Ray queue: it outlives
a driver restart, so a re-attached caller or the service can replay from any `seq`, and it needs no
Ray where the loop runs in-process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("rayfit")
EVENTS_FILE = "events.jsonl"

Event = dict[str, Any]
Sink = Callable[[Event], None]


def dispatch(sinks: list[Sink], event: Event) -> None:
    """Hand `event` to every sink; a failing sink is logged, never allowed to stop the run."""
    for sink in sinks:
        try:
            sink(event)
        except Exception:
            log.exception("an event callback failed on a %s event", event.get("type"))


def epoch_sink(fn: Callable[[int, dict[str, float]], None]) -> Sink:
    """A sink that calls `fn(epoch, metrics)` for each finished epoch."""

    def sink(event: Event) -> None:
        if event["type"] == "epoch":
            fn(event["epoch"], dict(event["metrics"]))

    return sink


class EventLog:
    """Appends events to a run folder's events.jsonl, continuing its `seq` numbering."""

    def __init__(self, run_dir: Path, sinks: list[Sink] | None = None) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.sinks = list(sinks or [])
        self.seq = 0
        if self.path.is_file():
            text = self.path.read_bytes()
            if text and not text.endswith(b"\n"):  # a line torn by a kill: end it, it is skipped
                with self.path.open("ab") as handle:
                    handle.write(b"\n")
            self.seq = max((e["seq"] for e in parse_lines(text)), default=0)

    def emit(self, kind: str, **fields: Any) -> Event:
        self.seq += 1
        event = {"seq": self.seq, "type": kind, "time": time.time(), **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(event, default=float) + "\n")
        dispatch(self.sinks, event)
        return event


def parse_lines(data: bytes) -> list[Event]:
    """The whole events of `data` (complete JSON lines holding a seq); anything else is skipped."""
    events = []
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("seq"), int) and "type" in event:
            events.append(event)
    return events


class EventTail:
    """Reads the events appended to a run's events.jsonl since this tail was made (or since `seq`)."""

    def __init__(self, run_dir: Path, after_seq: int | None = None) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.after_seq = after_seq
        self.offset = 0 if after_seq is not None or not self.path.is_file() else self.path.stat().st_size

    def read(self) -> list[Event]:
        """New whole lines since the last read (a line still being written waits for the next)."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        events = parse_lines(data[:end])
        if self.after_seq is not None:
            events = [e for e in events if e["seq"] > self.after_seq]
        return events


@contextlib.contextmanager
def follow(run_dir: Path, sinks: list[Sink], poll_s: float = 0.1) -> Iterator[None]:
    """While inside, a thread hands each new event of the run folder to `sinks`; on the way out
    the last events are handed over too."""
    tail = EventTail(run_dir)
    done = threading.Event()

    def pump() -> None:
        while not done.wait(poll_s):
            for event in tail.read():
                dispatch(sinks, event)

    thread = threading.Thread(target=pump, name="rayfit-events", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        for event in tail.read():
            dispatch(sinks, event)
