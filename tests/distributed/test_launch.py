"""What a user sees on the Ray path: a stale recorded cluster is not waited on, the progress bar
in a terminal and plain lines in a pipe, and none of Ray's per-report lines in either."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import write_experiment

pytestmark = pytest.mark.slow
RAY_REPORT_LINES = ("Reporting training result", "Checkpoint successfully created", "TrainController",
                    "Attempting to start training worker group")


def dead_address() -> str:
    """HOST:PORT where nothing listens (a port that was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def run_in_terminal(command: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal as stdout and stderr, as in a shell; (exit code, screen)."""
    main_fd, child_fd = pty.openpty()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdin=child_fd, stdout=child_fd, stderr=child_fd)
    os.close(child_fd)
    chunks, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main_fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(main_fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    else:
        process.kill()
    os.close(main_fd)
    return process.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_a_dead_recorded_cluster_is_reported_in_one_line_and_a_local_ray_trains_with_a_bar(tmp_path):
    """`ray start` recorded a cluster that no longer answers (a killed head leaves the file behind):
    `rayfit train` with a Ray Train worker says so in one line, starts a local Ray and finishes within
    60 s, showing rich bars in a terminal and none of Ray's per-report lines."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rf", dir="/tmp"))  # short: Ray's socket paths must fit
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text(dead_address())
        experiment = write_experiment(tmp_path, trainer={"epochs": 2, "progress": "auto"},
                                      scaling={"num_workers": 1})
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(ray_tmp), "TERM": "xterm-256color"}
        started = time.monotonic()
        code, screen = run_in_terminal([sys.executable, "-m", "rayfit.cli", "train", str(experiment)],
                                       env, tmp_path, timeout_s=120)
        elapsed = time.monotonic() - started
    finally:  # the local Ray belongs to the rayfit process and ended with it
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert code == 0, screen[-3000:]
    assert screen.count("does not answer; starting a local Ray") == 1
    assert "━" in screen and "epoch 2/2 train_loss=" in screen  # the bars, and a line per epoch
    assert "tiny finished after 2 epoch(s)" in screen
    for line in RAY_REPORT_LINES:
        assert line not in screen
    assert elapsed < 60, f"took {elapsed:.0f} s"  # not the 6 minutes and more Ray would wait


SLOW_MODEL = """
import time
from torch import nn

def build(n_inputs, n_outputs):
    class Slow(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(n_inputs, n_outputs)

        def forward(self, x):
            time.sleep(0.05)
            return self.net(x)
    return Slow()
"""


def test_a_cluster_that_dies_mid_run_ends_the_driver_with_one_line(tmp_path):
    """A head started with `ray start --head` is SIGKILLed while `rayfit train` runs on it: the driver
    ends within a minute with exit 1 and one line naming the address, not a hang or Ray's abort."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rf", dir="/tmp"))
    port = dead_address().rsplit(":", 1)[1]
    (tmp_path / "slow_model.py").write_text(SLOW_MODEL)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "RAY_TMPDIR": str(ray_tmp), "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "RAY_AUTH_MODE": "token"}  # `ray start` enables token auth; clients then send ~/.ray's token
    head = [str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={port}", "--num-cpus=2",
            "--include-dashboard=false", f"--temp-dir={ray_tmp}", "--node-ip-address=127.0.0.1",
            "--disable-usage-stats"]
    subprocess.run(head, env=env, check=True, capture_output=True, timeout=120)
    try:
        experiment = write_experiment(tmp_path, model={"type": "slow_model:build"},
                                      trainer={"epochs": 50, "progress": "log"},
                                      scaling={"num_workers": 1, "address": f"127.0.0.1:{port}"})
        driver = subprocess.Popen([sys.executable, "-m", "rayfit.cli", "train", str(experiment)], env=env,
                                  cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        events = tmp_path / "runs" / "tiny" / "events.jsonl"
        deadline = time.monotonic() + 240
        while not (events.is_file() and '"type": "epoch"' in events.read_text()):
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[1][-3000:]
            time.sleep(0.5)
        head_processes = subprocess.run(["pgrep", "-f", str(ray_tmp)], capture_output=True, text=True).stdout
        for pid in map(int, head_processes.split()):
            if pid != driver.pid:
                os.kill(pid, 9)
        killed = time.monotonic()
        out, err = driver.communicate(timeout=120)
    finally:
        leftover = subprocess.run(["pgrep", "-f", str(ray_tmp)], capture_output=True, text=True).stdout
        for pid in map(int, leftover.split()):
            os.kill(pid, 9)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    took = time.monotonic() - killed
    assert driver.returncode == 1, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.fullmatch(
        rf"error: scaling\.address: the Ray cluster at [0-9.]+:{port} stopped answering; the run folder keeps "
        r"its last checkpoint: run the same command again once the cluster is back", errors[0]), err[-3000:]
    assert "rayfit/" not in err  # no traceback through rayfit (Ray's own threads may still print theirs)
    assert took < 60, f"took {took:.0f} s"
