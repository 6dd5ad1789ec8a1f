"""`rayfit serve` as users run it: a real uvicorn server on 127.0.0.1 with runs on a `ray start`
cluster of the module's own, watched through a real WebSocket client."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from websockets.sync.client import connect

from rayfit.callbacks.checkpoint import CheckpointIndex
from rayfit.client import ServiceClient
from rayfit.service.runner import GONE
from tests.conftest import checkpoint_arrays
from tests.service.live import Server, environment, free_port, seed_request, wait_until, write_digits_csv

pytestmark = pytest.mark.slow


def messages(url: str, task_id: str, since: int = 0, until=None, limit_s: float = 240) -> list[dict]:
    """WebSocket messages of a task after `since` until `until(message)` is true (default: a final state)."""
    from rayfit.service.states import is_final

    until = until or is_final
    got = []
    ws_url = url.replace("http://", "ws://") + f"/ws/training/{task_id}?since={since}"
    with connect(ws_url, open_timeout=30, close_timeout=5) as ws:
        while True:
            message = json.loads(ws.recv(timeout=limit_s))
            got.append(message)
            if until(message):
                return got


def final_weights(run_dir: Path) -> list[np.ndarray]:
    return checkpoint_arrays(CheckpointIndex(run_dir / "checkpoints").latest)


def run_dir(server: Server, task: dict) -> Path:
    return server.folder / "runs" / task["name"]


def test_seed_lifecycle_with_pause_and_resume_ends_with_the_weights_of_an_unpaused_run(server):
    """Two runs of one request: one straight through, one paused after its first epoch and resumed;
    every epoch reaches the WebSocket in order, a reconnect with since= gets what it missed, and
    the final weights are bitwise equal. A completed run cannot be paused (409)."""
    client = ServiceClient(server.url)
    epochs = 20
    straight = client.submit_seed(seed_request("straight", epochs))
    assert straight["state"] == "pending" and straight["epochs"] == epochs
    # Watch the first two epochs, drop the connection, come back with since= for the rest.
    first = messages(server.url, straight["task_id"], until=lambda m: m.get("epoch") == 2)
    rest = messages(server.url, straight["task_id"], since=first[-1]["seq"])
    stream = first + rest
    assert [m["seq"] for m in stream] == list(range(1, len(stream) + 1))  # nothing lost, nothing twice
    assert [m["epoch"] for m in stream if m["type"] == "epoch_progress"] == list(range(1, epochs + 1))
    assert [m["state"] for m in stream if m["type"] == "state"] == ["pending", "running", "completed"]
    assert {"train_loss", "val_loss", "val_accuracy", "learning_rate"} <= set(stream[-2]["metrics"])
    assert {"cpu_percent", "memory_percent"} <= set(stream[-2]["system"])

    paused = client.submit_seed(seed_request("paused", epochs))
    before = messages(server.url, paused["task_id"], until=lambda m: m.get("type") == "epoch_progress")
    assert client.pause(paused["task_id"])["state"] in ("pausing", "paused")
    states = messages(server.url, paused["task_id"], since=before[-1]["seq"],
                      until=lambda m: m.get("state") in ("paused", "completed"))
    assert states[-1]["state"] == "paused", states[-1]
    progress = client.progress(paused["task_id"])
    assert progress["state"] == "paused" and progress["epoch"] < epochs
    with pytest.raises(Exception, match="409: cannot pause task .*: it is paused"):
        client.pause(paused["task_id"])
    assert client.resume(paused["task_id"])["state"] == "pending"
    after = messages(server.url, paused["task_id"], since=states[-1]["seq"])
    assert after[-1]["state"] == "completed", after[-1]
    epoch_seen = [m["epoch"] for m in before + states + after if m["type"] == "epoch_progress"]
    assert sorted(set(epoch_seen)) == list(range(1, epochs + 1))

    for a, b in zip(final_weights(run_dir(server, straight)), final_weights(run_dir(server, paused)), strict=True):
        assert np.array_equal(a, b)
    done = client.progress(paused["task_id"])
    assert [h["epoch"] for h in done["history"]] == list(range(1, epochs + 1)) and done["eta_s"] is None
    with pytest.raises(Exception, match="409: cannot pause task .*: it is completed"):
        client.pause(straight["task_id"])
    assert {straight["task_id"], paused["task_id"]} <= {r["task_id"] for r in client.runs("completed")}


def test_cancel_stops_a_run_for_good(server):
    client = ServiceClient(server.url)
    task = client.submit({"name": "cancelled", "data": {"source": "sklearn:digits"},
                          "trainer": {"epochs": 200, "batch_size": 16}, "tracking": {"enabled": False}})
    messages(server.url, task["task_id"], until=lambda m: m.get("type") == "epoch_progress")
    assert client.cancel(task["task_id"])["state"] == "stopping"
    end = messages(server.url, task["task_id"])[-1]
    assert end["state"] == "cancelled" and client.run(task["task_id"])["epoch"] < 200
    with pytest.raises(Exception, match="409: cannot resume task .*: it is cancelled"):
        client.resume(task["task_id"])


def actor_processes(head_pid: int) -> list[psutil.Process]:
    """The run actors' processes of this module's cluster (Ray titles them ray::RunActor...)."""
    return [p for p in psutil.Process(head_pid).children(recursive=True)
            if "RunActor" in " ".join(p.cmdline())]


def test_a_sigkilled_service_restarted_reattaches_and_marks_lost_runs_failed(cluster, tmp_path):
    """The service dies (SIGKILL) while two runs train; one run's process is killed too. Started
    again on the same registry, the service follows the live run to completed (its epochs keep
    coming over the WebSocket) and marks the other failed, with the reason."""
    address, env, head = cluster
    write_digits_csv(tmp_path / "digits.csv")
    server = Server(tmp_path, env, address).start()
    client = ServiceClient(server.url)
    body = {"data": {"source": "digits.csv", "target": "target"}, "trainer": {"epochs": 25, "batch_size": 16},
            "tracking": {"enabled": False}}
    survivor = client.submit(body | {"name": "survivor"})
    lost = client.submit(body | {"name": "lost"})
    for task in (survivor, lost):
        messages(server.url, task["task_id"], until=lambda m: m.get("type") == "epoch_progress")
    server.kill()
    # The actor of `lost` is the one that holds its run folder's lock file open.
    lost_pids = [p.pid for p in actor_processes(head.pid) if any(lost["name"] in f.path for f in p.open_files())]
    assert len(lost_pids) == 1, lost_pids
    os.kill(lost_pids[0], signal.SIGKILL)

    again = Server(tmp_path, env, address, port=server.port).start()
    try:
        end = messages(again.url, survivor["task_id"], since=1)
        assert end[-1]["state"] == "completed"
        assert [m["epoch"] for m in end if m["type"] == "epoch_progress"][-1] == 25
        failed = wait_until(lambda: (r := client.run(lost["task_id"]))["state"] == "failed" and r,
                            "the lost run to be marked failed", 120)
        assert "actor" in failed["reason"], failed
    finally:
        again.stop()
    # What a person sees: a line per run found again, no Ray chatter, no stack dump on SIGTERM.
    assert sorted(again.output().splitlines()) == sorted([
        f"reattached to {survivor['name']}, still running on Ray",
        f"{lost['name']}: marked failed: {GONE}",
        f"rayfit service on http://127.0.0.1:{again.port} (registry sqlite:///{tmp_path}/rayfit-service.db)"])


def test_the_token_guards_http_and_websocket(cluster, tmp_path):
    address, env, _ = cluster
    token = "t0k3n-for-the-live-test-only"
    server = Server(tmp_path, env | {"RAYFIT_SERVICE_TOKEN": token}, address).start()
    try:
        assert httpx.get(f"{server.url}/api/v1/runs").status_code == 401
        assert ServiceClient(server.url, token=token).runs() == []
        with pytest.raises(Exception, match="403"):  # a refused handshake
            with connect(f"ws://127.0.0.1:{server.port}/ws/training/x", open_timeout=10):
                pass
        with pytest.raises(Exception, match="4404|unknown task"):
            with connect(f"ws://127.0.0.1:{server.port}/ws/training/x?token={token}", open_timeout=10) as ws:
                ws.recv(timeout=10)
    finally:
        server.stop()


def test_without_a_cluster_a_submitted_run_fails_with_the_reason(tmp_path):
    env = environment(tmp_path)
    dead = f"127.0.0.1:{free_port()}"
    server = Server(tmp_path, env, dead).start()
    try:
        client = ServiceClient(server.url)
        task = client.submit({"name": "nowhere", "data": {"source": "sklearn:digits"}, "tracking": {"enabled": False}})
        end = messages(server.url, task["task_id"], limit_s=60)[-1]
        assert end["state"] == "failed"
        assert end["reason"].startswith(f"cannot join the Ray cluster at {dead}: nothing answers at {dead}")
        assert "Traceback" not in server.output()
    finally:
        server.stop()


def test_the_cli_lists_watches_and_steers_tasks_of_a_server(server, capsys):
    from rayfit.cli import main

    client = ServiceClient(server.url)
    task = client.submit({"name": "cli", "data": {"source": "sklearn:digits"}, "trainer": {"epochs": 3},
                          "tracking": {"enabled": False}})
    assert main(["runs", "watch", task["task_id"], "--server", server.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "pending" and lines[-1] == "completed: reached the last epoch (3)", lines
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    assert main(["runs", "--server", server.url, "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(task["task_id"]))
    assert row.split()[1:3] == ["completed", "3/3"]
    assert main(["runs", "pause", task["task_id"], "--server", server.url]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {server.url}: 409: cannot pause task {task['task_id']}: it is completed")
    assert main(["runs", "show", "nosuch", "--server", server.url]) == 2
    assert "404: unknown task_id 'nosuch'" in capsys.readouterr().err

