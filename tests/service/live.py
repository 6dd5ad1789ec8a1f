"""Helpers of the live service tests: a `ray start --head` cluster of their own (stopped by its
process group, never `ray stop`, which would stop every Ray on the machine), `rayfit serve` as a
subprocess on a free port, digits as a CSV, and waiting on the API."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Fixed by default: a second cluster on the machine (another test run's) would collide on them.
AGENT_PORTS = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
               "runtime-env-agent-port")
DIGITS_FEATURES = [f"pixel{i}" for i in range(64)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(ray_tmp: Path) -> dict[str, str]:
    """This python's tools first, this worktree's rayfit, Ray's token auth, a Ray temp dir of our own."""
    path = os.pathsep.join(filter(None, [str(REPO / "platform"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": path,
            "RAY_AUTH_MODE": "token", "RAY_TMPDIR": str(ray_tmp)}


@contextmanager
def ray_head(num_cpus: int = 2) -> Iterator[tuple[str, dict[str, str], subprocess.Popen]]:
    """(GCS address, env, the head's process) of a fresh `ray start --head --block` cluster."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rfs", dir="/tmp"))  # short: Ray's socket paths must fit
    env = environment(ray_tmp)
    port = free_port()
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", f"--num-cpus={num_cpus}",
         "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={ray_tmp}", *(f"--{flag}={free_port()}" for flag in AGENT_PORTS)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        wait_until(lambda: port_open(port), "the Ray head to listen", 120)
        yield address, env, head
    finally:
        stop_group(head)


def stop_group(process: subprocess.Popen, grace_s: float = 15) -> None:
    """SIGTERM the process's own group (the head and every process it started), SIGKILL what stays."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
    time.sleep(1)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # workers that outlived the head
    except ProcessLookupError:
        pass


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = 120, every_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


class Server:
    """`rayfit serve` in a subprocess, in `folder` (its registry, data and runs live there)."""

    def __init__(self, folder: Path, env: dict[str, str], ray_address: str | None, port: int | None = None,
                 extra: list[str] | None = None) -> None:
        self.folder, self.env, self.ray_address = folder, env, ray_address
        self.port = port or free_port()
        self.extra = list(extra or [])
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        command = [sys.executable, "-m", "rayfit.cli", "serve", "--port", str(self.port), *self.extra]
        if self.ray_address:
            command += ["--ray-address", self.ray_address]
        self.log_path = self.folder / f"serve-{self.port}-{time.monotonic_ns()}.log"
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, cwd=self.folder, env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        wait_until(self.ready, f"rayfit serve on port {self.port}", 90)
        return self

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"rayfit serve exited: {self.output()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/api/v1/runs", timeout=2).status_code in (200, 401)
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.log.close()


def write_digits_csv(path: Path) -> Path:
    """sklearn's digits as a CSV: 64 pixel columns and a target."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*DIGITS_FEATURES, "target"])
        for row, target in zip(digits.data, digits.target):
            writer.writerow([*(int(v) for v in row), int(target)])
    return path


def seed_request(name: str, epochs: int, **extra: Any) -> dict[str, Any]:
    """The flat request format for the digits CSV (relative to the server's data root)."""
    return {"name": name, "algorithm_type": "deep_learning", "epochs": epochs, "batch_size": 16,
            "learning_rate": 0.003, "seed": 3, "train_data_path": "digits.csv",
            "feature_columns": DIGITS_FEATURES, "target_column": "target",
            "algorithm_params": {"model_type": "mlp", "hidden_units": [32], "dropout_rate": 0.1}, **extra}
