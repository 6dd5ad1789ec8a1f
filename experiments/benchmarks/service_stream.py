"""The service's stream and intake: epoch end -> WebSocket message latency, concurrent watchers,
submissions per second.

1. `rayfit serve` in a temporary folder (its own local Ray: RAY_TMPDIR is a new folder, so no
   cluster recorded by `ray start` on this machine is joined) runs a digits job of --epochs epochs
   while --watchers WebSocket clients follow it. Latency of each message = the time the client got
   it - the time the run wrote the epoch's event (events.jsonl `time`): same machine, same clock.
2. Submissions per second: --submissions native experiments posted by 8 concurrent clients to the
   API with its runner off (validation, path confinement and the registry write; starting Ray
   actors is not the API's cost and would swamp a small machine).

    .venv/bin/python experiments/benchmarks/service_stream.py [--epochs 30] [--watchers 200]
        [--submissions 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from websockets.asyncio.client import connect

from rayfit.service.app import create_app
from rayfit.service.settings import ServiceSettings

EXPERIMENT = {"name": "bench", "data": {"source": "sklearn:digits"}, "tracking": {"enabled": False},
              "model": {"type": "mlp", "hidden_units": [64]}, "trainer": {"batch_size": 32}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/runs", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the service at {url} did not answer in {timeout_s:g} s")


async def watch(url: str, task_id: str, epochs: int, received: dict[int, float]) -> bool:
    """Follow the task until its final state; `received[epoch]` = when this client got it."""
    ws_url = url.replace("http://", "ws://") + f"/ws/training/{task_id}"
    async with connect(ws_url, open_timeout=60, max_queue=None) as ws:
        async for text in ws:
            message = json.loads(text)
            if message["type"] == "epoch_progress":
                received[message["epoch"]] = time.time()
            if message["type"] == "state" and message["state"] in ("completed", "failed", "cancelled"):
                return len(received) == epochs


async def stream(url: str, folder: Path, epochs: int, watchers: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        task = (await client.post("/api/v1/runs", json=EXPERIMENT | {"trainer": {"epochs": epochs, "batch_size": 32}})).json()
        received: list[dict[int, float]] = [{} for _ in range(watchers)]
        complete = await asyncio.gather(*(watch(url, task["task_id"], epochs, r) for r in received))
        run = (await client.get(f"/api/v1/runs/{task['task_id']}")).json()
    events = [json.loads(line) for line in (folder / "runs" / run["name"] / "events.jsonl").read_text().splitlines()]
    written = {e["epoch"]: e["time"] for e in events if e["type"] == "epoch"}
    latencies = sorted((got[epoch] - written[epoch]) * 1000 for got in received for epoch in got)
    return {"state": run["state"], "watchers_complete": sum(complete), "messages": len(latencies),
            "p50_ms": statistics.median(latencies), "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
            "max_ms": latencies[-1]}


async def submit_many(url: str, count: int, concurrency: int = 8) -> float:
    queue = list(range(count))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            queue.pop()
            response = await client.post("/api/v1/runs", json=EXPERIMENT)
            assert response.status_code == 201, response.text

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


def intake(folder: Path, count: int) -> float:
    """Submissions/s of the API alone (runner off), served by uvicorn in a thread of this process."""
    port = free_port()
    app = create_app(ServiceSettings.in_folder(folder), run_tasks=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_ready(url)
    try:
        return asyncio.run(submit_many(url, count))
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--submissions", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, ray_tmp = Path(tmp) / "service", Path(tempfile.mkdtemp(prefix="rfb", dir="/tmp"))
        folder.mkdir()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = os.environ | {"RAY_TMPDIR": str(ray_tmp)}
        serve = subprocess.Popen([sys.executable, "-m", "rayfit.cli", "serve", "--port", str(port)], cwd=folder,
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(url)
            figures = asyncio.run(stream(url, folder, args.epochs, args.watchers))
        finally:
            serve.terminate()
            serve.wait(timeout=60)
        rate = intake(Path(tmp), args.submissions)
    print(f"run: {figures['state']}, {args.epochs} epochs, {args.watchers} watchers "
          f"({figures['watchers_complete']} got every epoch, {figures['messages']} messages)")
    print(f"epoch end -> WebSocket message: p50 {figures['p50_ms']:.0f} ms, p95 {figures['p95_ms']:.0f} ms, "
          f"max {figures['max_ms']:.0f} ms (target < 200 ms)")
    print(f"submissions: {rate:.0f}/s accepted (201) by the API, {args.submissions} posts from 8 clients")


if __name__ == "__main__":
    main()
