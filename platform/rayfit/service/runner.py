"""The runner: one thread that starts pending tasks as Ray actors, follows each run's events.jsonl
into the registry (an epoch_progress message per epoch), and settles a task's state when its actor
returns. On start it reconciles the registry with Ray: runs still going are reattached, runs
whose actor is gone are settled from their folder (or marked failed, with the reason)."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from rayfit import logs
from rayfit.backends.gpu_usage import utilization
from rayfit.errors import first_line
from rayfit.events import EventTail
from rayfit.run_folder import RunFolder
from rayfit.service import states
from rayfit.service.registry import Registry, RunView
from rayfit.service.stream import Hub

log = logging.getLogger("rayfit")
NAMESPACE = "rayfit-service"  # the run actors' Ray namespace, where a restarted service finds them
GONE = ("the run's Ray actor is gone (the service or the cluster stopped while it ran); "
        "resume it to go on from its last checkpoint")


@dataclass
class Tracked:
    """A task with a live actor: its handle, the pending outcome and the tail of its events."""

    handle: Any
    outcome: Any  # ObjectRef of fit() or result()
    tail: EventTail


class Runner:
    def __init__(self, registry: Registry, hub: Hub, ray_address: str | None, poll_s: float = 0.05) -> None:
        self.registry, self.hub, self.ray_address, self.poll_s = registry, hub, ray_address, poll_s
        self.tracked: dict[str, Tracked] = {}
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        self.connected = False
        self.thread = threading.Thread(target=self._main, name="rayfit-runner", daemon=True)
        psutil.cpu_percent()  # the first call only starts the measurement

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wakeup.set()
        self.thread.join(timeout=10)

    def wake(self) -> None:
        """A task was added or resumed: start it now rather than at the next poll."""
        self.wakeup.set()

    def _main(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception:  # one bad tick must not end the runner: it is the service's heart
                log.exception("the service's runner failed a round; it goes on")
            self.wakeup.wait(self.poll_s if self.tracked else 1.0)
            self.wakeup.clear()

    def tick(self) -> None:
        pending = self.registry.in_states((states.PENDING,))
        if not self.connected:
            if not pending and not self.registry.in_states(states.ACTIVE):
                return  # Ray is joined when there is something to run: an idle service needs none
            problem = self.connect()
            if problem is not None:  # no cluster: the runs waiting for one say why (and may be resumed)
                self._fail_pending(pending, problem)
                return
        for run in pending:
            self._start(run)
        for task_id in list(self.tracked):
            self._follow(task_id)

    def connect(self) -> str | None:
        """Join Ray and reattach to the runs still going; None, or why Ray cannot be joined. Called
        by `rayfit serve` on the main thread before serving (Ray's signal handlers are then
        replaced by the server's, which shut down gracefully), else by the runner when work comes."""
        try:
            self._connect()
        except Exception as exc:
            import ray

            ray.shutdown()  # a half-made connection would make the next ray.init refuse
            return (f"cannot join the Ray cluster at {self.ray_address or 'local'}: "
                    f"{first_line(exc).removeprefix('scaling.address: ')}")
        self._reconcile()
        return None

    def _connect(self) -> None:
        import ray

        from rayfit.distributed.launch import check_reachable, recorded_cluster

        platform = str(Path(__file__).resolve().parents[2])  # rayfit's source folder, for the actors
        path = os.pathsep.join(filter(None, [platform, os.environ.get("PYTHONPATH")]))
        address = self.ray_address
        if address is not None:
            check_reachable(address)  # in seconds, rather than after Ray's long retries
        else:  # a `ray start` cluster if one answers (runs outlive the service), else a local Ray
            address = recorded_cluster()
        if not logs.verbose():  # Ray's note on its token auth, said at every connection
            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(address=address, namespace=NAMESPACE,
                 runtime_env={"env_vars": {"PYTHONPATH": path, "RAY_DATA_LOG_LEVEL": "WARNING"}},
                 log_to_driver=False, configure_logging=False)
        self.connected = True

    def _fail_pending(self, pending: list[RunView], reason: str) -> None:
        log.warning("%s", reason)
        for run in pending:
            message = self.registry.transition(run.id, (states.PENDING,), states.FAILED, reason)
            if message is not None:
                self.hub.publish(message)

    def _reconcile(self) -> None:
        """After a (re)start: reattach to the actors of active runs, settle the others."""
        import ray

        for run in self.registry.in_states((states.RUNNING, states.PAUSING, states.STOPPING)):
            try:
                handle = ray.get_actor(run.actor, namespace=NAMESPACE) if run.actor else None
            except ValueError:
                handle = None
            if handle is None:
                self._pump(run.id, EventTail(Path(run.run_dir), after_seq=run.events_seq))
                self._settle_from_folder(run)
                continue
            log.info("reattached to %s, still running on Ray", run.name)
            self.tracked[run.id] = Tracked(handle, handle.result.remote(),
                                           EventTail(Path(run.run_dir), after_seq=run.events_seq))

    def _start(self, run: RunView) -> None:
        from rayfit.service.actor import RunActor

        name = f"rayfit-{run.id}-{run.attempt + 1}"
        message = self.registry.transition(run.id, (states.PENDING,), states.RUNNING,
                                           actor=name, attempt=run.attempt + 1)
        if message is None:
            return  # cancelled or paused before it started
        self.hub.publish(message)
        # A run that trains in its actor takes a CPU; one that drives Ray Train workers takes none
        # (its workers hold the resources: the actor must not keep them from being placed).
        in_actor = run.config.get("scaling", {}).get("num_workers", 0) == 0
        handle = RunActor.options(name=name, namespace=NAMESPACE, lifetime="detached",
                                  num_cpus=1 if in_actor else 0).remote()
        tail = EventTail(Path(run.run_dir), after_seq=run.events_seq)
        self.tracked[run.id] = Tracked(handle, handle.fit.remote(run.config), tail)

    def _follow(self, task_id: str) -> None:
        import ray

        tracked = self.tracked[task_id]
        self._pump(task_id, tracked.tail)
        ready, _ = ray.wait([tracked.outcome], timeout=0)
        if not ready:
            return
        try:
            outcome = ray.get(ready[0]) or {"status": "failed", "reason": GONE}
        except ray.exceptions.RayError as exc:
            outcome = {"status": "failed", "reason": f"the run's Ray actor died: {first_line(exc)}"}
        self._pump(task_id, tracked.tail)  # what was written before fit returned
        ray.kill(tracked.handle)
        del self.tracked[task_id]
        self._settle(task_id, outcome["status"], outcome.get("reason"))

    def _pump(self, task_id: str, tail: EventTail) -> None:
        """The run's new events into the registry: an epoch_progress message per epoch."""
        seq = None
        for event in tail.read():
            seq = event["seq"]
            # The file is in the run folder, which others may write: only well-formed epochs count.
            metrics, epoch, epochs = event.get("metrics"), event.get("epoch"), event.get("epochs", 0)
            if event["type"] == "epoch" and isinstance(metrics, dict) and isinstance(epoch, int) \
                    and isinstance(epochs, int):
                numbers = {str(k): v for k, v in metrics.items() if isinstance(v, (int, float))}
                message = self.registry.record_epoch(task_id, epoch, epochs, numbers, seq,
                                                     {"system": system_figures()})
                self.hub.publish(message)
        if seq is not None:
            self.registry.set_events_seq(task_id, seq)

    def _settle(self, task_id: str, status: str, reason: str | None) -> None:
        final = states.OUTCOMES.get(status, states.FAILED)
        message = self.registry.transition(task_id, states.ACTIVE, final, reason)
        if message is not None:
            self.hub.publish(message)

    def _settle_from_folder(self, run: RunView) -> None:
        """A run whose actor is gone: its run.json says how it ended, if it did."""
        try:
            status = RunFolder(Path(run.run_dir)).status()
        except Exception:  # no folder yet, or unreadable: the run did not end cleanly
            status = {}
        if status.get("status") in ("finished", "paused", "cancelled"):
            self._settle(run.id, status["status"], status.get("stop_reason"))
        else:
            log.warning("%s: marked failed: %s", run.name, GONE)
            self._settle(run.id, "failed", GONE)


def system_figures() -> dict[str, float]:
    """The machine's use as the epoch ends: CPU and memory percent, GPU utilization when there is one."""
    figures = {"cpu_percent": psutil.cpu_percent(), "memory_percent": psutil.virtual_memory().percent}
    return figures | utilization(0)
