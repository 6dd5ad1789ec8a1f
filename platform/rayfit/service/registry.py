"""The task registry: runs, their states and every message sent about them, in a SQL database
(SQLAlchemy; a SQLite file in the working folder by default). It is the service's truth: a
restarted service reads it back, and a WebSocket client that reconnects replays from it."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (JSON, Float, ForeignKey, Integer, String, Text, create_engine, event, select,
                        update)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from rayfit.service import states

DEFAULT_URL = "sqlite:///rayfit-service.db"


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # the resolved experiment, as JSON
    run_dir: Mapped[str] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(100), nullable=True)  # Ray actor name
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    epochs: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    events_seq: Mapped[int] = mapped_column(Integer, default=0)  # last events.jsonl seq read
    last_seq: Mapped[int] = mapped_column(Integer, default=0)  # last message seq
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)


class Message(Base):
    __tablename__ = "messages"

    task_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(Text)  # the JSON text sent over the WebSocket


@dataclass
class RunView:
    """A run as the API shows it (a plain copy, safe outside the database session)."""

    id: str
    name: str
    state: str
    reason: str | None
    run_dir: str
    actor: str | None
    attempt: int
    epoch: int
    epochs: int
    metrics: dict[str, Any]
    events_seq: int
    last_seq: int
    created: float
    updated: float
    config: dict[str, Any]

    def public(self) -> dict[str, Any]:
        return {"task_id": self.id, "name": self.name, "state": self.state, "reason": self.reason,
                "epoch": self.epoch, "epochs": self.epochs, "metrics": self.metrics,
                "created": self.created, "updated": self.updated}


def view(run: Run) -> RunView:
    return RunView(run.id, run.name, run.state, run.reason, run.run_dir, run.actor, run.attempt,
                   run.epoch, run.epochs, dict(run.metrics or {}), run.events_seq, run.last_seq,
                   run.created, run.updated, dict(run.config))


class Registry:
    """Thread-safe access to the runs and their messages; each change is one transaction."""

    def __init__(self, url: str = DEFAULT_URL) -> None:
        sqlite = url.startswith("sqlite")
        self.engine = create_engine(url, connect_args={"check_same_thread": False} if sqlite else {})
        if sqlite:  # WAL: readers (the API) do not wait for the runner's writes
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.lock = threading.Lock()  # one writer at a time in this process: seq numbers stay dense

    def add(self, task_id: str, name: str, config: dict[str, Any], run_dir: str, epochs: int) -> RunView:
        now = time.time()
        run = Run(id=task_id, name=name, state=states.PENDING, config=config, run_dir=run_dir,
                  epochs=epochs, metrics={}, attempt=0, epoch=0, events_seq=0, last_seq=0,
                  created=now, updated=now)
        with self.lock, self.sessions.begin() as db:
            db.add(run)
            self._message(db, run, {"type": "state", "state": states.PENDING, "reason": None})
        return view(run)

    def get(self, task_id: str) -> RunView | None:
        with self.sessions() as db:
            run = db.get(Run, task_id)
            return view(run) if run is not None else None

    def list(self, state: str | None = None) -> list[RunView]:
        query = select(Run).order_by(Run.created)
        if state is not None:
            query = query.where(Run.state == state)
        with self.sessions() as db:
            return [view(r) for r in db.scalars(query)]

    def in_states(self, wanted: tuple[str, ...]) -> list[RunView]:
        with self.sessions() as db:
            return [view(r) for r in db.scalars(select(Run).where(Run.state.in_(wanted)))]

    def transition(self, task_id: str, allowed: tuple[str, ...], to: str, reason: str | None = None,
                   **fields: Any) -> dict[str, Any] | None:
        """Move the run to `to` if it is in one of `allowed` (compare and set), with its state
        message; the message, or None when the run was in another state."""
        with self.lock, self.sessions.begin() as db:
            run = db.get(Run, task_id, with_for_update=True)
            if run is None or run.state not in allowed:
                return None
            run.state, run.reason = to, reason
            for key, value in fields.items():
                setattr(run, key, value)
            return self._message(db, run, {"type": "state", "state": to, "reason": reason})

    def record_epoch(self, task_id: str, epoch: int, epochs: int, metrics: dict[str, Any],
                     events_seq: int, extra: dict[str, Any]) -> dict[str, Any]:
        """An epoch's end: the run's latest figures and its epoch_progress message."""
        with self.lock, self.sessions.begin() as db:
            run = db.get(Run, task_id)
            assert run is not None
            run.epoch, run.epochs, run.metrics, run.events_seq = epoch, epochs, metrics, events_seq
            return self._message(db, run, {"type": "epoch_progress", "epoch": epoch, "epochs": epochs,
                                           "metrics": metrics, **extra})

    def set_events_seq(self, task_id: str, events_seq: int) -> None:
        with self.lock, self.sessions.begin() as db:
            db.execute(update(Run).where(Run.id == task_id).values(events_seq=events_seq))

    def messages(self, task_id: str, since: int = 0, kind: str | None = None) -> list[dict[str, Any]]:
        query = select(Message.body).where(Message.task_id == task_id, Message.seq > since).order_by(Message.seq)
        with self.sessions() as db:
            found = [json.loads(body) for body in db.scalars(query)]
        return [m for m in found if kind is None or m["type"] == kind]

    @staticmethod
    def _message(db: Session, run: Run, body: dict[str, Any]) -> dict[str, Any]:
        run.last_seq += 1
        run.updated = time.time()
        message = {**body, "task_id": run.id, "timestamp": run.updated, "seq": run.last_seq}
        db.add(Message(task_id=run.id, seq=run.last_seq, body=json.dumps(message, default=float)))
        return message


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
