"""MLflow in a process of its own, as W&B runs its service process: the run neither imports MLflow
(as long as torch's import, on a 2-core machine) nor waits for its store; that process does both on
the other core. The calls cross a `multiprocessing` manager (the standard library's RPC) on a Unix
socket. The process is started as `python -m rayfit.tracking_process`, not by multiprocessing's
spawn, which would run the caller's own script again in it (a script without a __main__ guard, a
notebook). It ends when its stdin closes: when the run closes it, or when the run's process dies."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any

from rayfit.logs import configure_worker, worker_env

BUFFER_ENV = "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"
_recorders: list[Any] = []  # in the tracking process: flushed when the run's process is gone


def _recorder(uri: str, system_metrics_s: float) -> Any:
    """Built in the tracking process: importing MLflow happens there."""
    from rayfit.callbacks.mlflow_tracking import MlflowRecorder

    _recorders.append(MlflowRecorder(uri, system_metrics_s))
    return _recorders[-1]


class _Manager(BaseManager):
    pass


_Manager.register("Recorder", callable=_recorder)


class TrackingProcess:
    """Starts the tracking process and its recorder in the background; `recorder()` waits for them."""

    def __init__(self, uri: str, system_metrics_s: float) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rayfit-tracking-start")
        self._ready: Future[Any] = self._starter.submit(self._start, uri, system_metrics_s)

    def _start(self, uri: str, system_metrics_s: float) -> Any:
        authkey = secrets.token_bytes(32)  # handed over on stdin: not visible in the process list
        package_root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        # MLflow as quiet as the run (a Trainer in a script never set its level), and its epoch
        # metrics written once a second, many epochs in one transaction (a SQLite store spent 14 ms
        # of CPU on each epoch's, on the core the run's second thread needs). What is set wins.
        env = {**worker_env(), BUFFER_ENV: "1", **os.environ, "PYTHONPATH": path}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "rayfit.tracking_process"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env=env,
            start_new_session=True,  # not in the terminal's process group: Ctrl-C pauses the run, which then closes this
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(authkey.hex() + "\n")
        self._process.stdin.flush()
        address = self._process.stdout.readline()
        if not address:
            raise RuntimeError(f"the MLflow tracking process ended at start (exit code {self._process.wait()})")
        manager = _Manager(address=json.loads(address), authkey=authkey)
        manager.connect()
        return manager.Recorder(uri, system_metrics_s)  # type: ignore[attr-defined]

    def recorder(self) -> Any:
        """The recorder's proxy: its methods run in the tracking process (errors come back raised)."""
        return self._ready.result()

    def close(self) -> None:
        """End the process (after the recorder ended the MLflow run, or when the run stops here)."""
        self._ready.exception()  # wait for the start; its error, if any, was raised to the caller already
        self._starter.shutdown()
        if self._process is not None and self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            self._process.wait()


def _flush_recorders() -> None:
    for recorder in _recorders:
        recorder.flush()


def _exit_when_stdin_closes() -> None:
    """Exit once the run closed stdin or died, after writing the epochs still queued (a killed run
    keeps its last epochs, unless this process was killed with it, as Ray kills a worker's children)."""
    sys.stdin.read()
    flushing = threading.Thread(target=_flush_recorders, daemon=True)
    flushing.start()
    flushing.join(timeout=30)  # a tracking server that does not answer does not keep it for ever
    os._exit(0)


def serve() -> None:
    """The tracking process: serve recorders until stdin closes."""
    configure_worker()
    # Below the run in the scheduler's eyes: torch's OpenMP worker spins on a core between steps,
    # and preempting it stalls the steps that wait for it (per-epoch writes took 13-16 ms on 2 cores
    # with this process at the run's priority, 5.5-7 ms below it).
    with contextlib.suppress(OSError, AttributeError):  # not on Windows, nor where a sandbox refuses it
        os.nice(10)
    authkey = bytes.fromhex(sys.stdin.readline().strip())
    server = _Manager(authkey=authkey).get_server()  # a Unix socket in a temp folder of its own
    threading.Thread(target=_exit_when_stdin_closes, daemon=True, name="rayfit-stdin-watch").start()
    print(json.dumps(server.address), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve()
