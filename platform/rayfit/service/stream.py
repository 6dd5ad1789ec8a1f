"""The per-task message stream: the runner publishes from its thread, each WebSocket client gets
what it missed from the registry (`?since=SEQ`) and then every new message, in seq order."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from rayfit.service.registry import Registry

CLOSE_UNKNOWN_TASK = 4404
CLOSE_TOO_BIG = 1009


class Hub:
    """Fan-out of new messages to the WebSocket clients of this process (the registry keeps them)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def publish(self, message: dict[str, Any]) -> None:
        """Thread-safe: hand `message` to the event loop, which gives it to each subscriber."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._deliver, message)

    def _deliver(self, message: dict[str, Any]) -> None:
        for queue in self.queues.get(message["task_id"], ()):
            queue.put_nowait(message)

    def subscribe(self, task_id: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.queues[task_id].add(queue)
        return queue

    def unsubscribe(self, task_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.queues[task_id].discard(queue)
        if not self.queues[task_id]:
            del self.queues[task_id]


async def serve_stream(websocket: WebSocket, registry: Registry, hub: Hub, task_id: str, since: int,
                       max_message: int) -> None:
    """Send the task's messages after `since`, then live ones, until the client leaves. Messages
    from the client are not expected: one larger than `max_message` closes the socket (1009)."""
    await websocket.accept()  # then closed with a reason a client can read, rather than a bare 403
    if await asyncio.to_thread(registry.get, task_id) is None:
        await websocket.close(code=CLOSE_UNKNOWN_TASK, reason=f"unknown task_id {task_id[:64]}")
        return
    queue = hub.subscribe(task_id)  # before the backlog is read: nothing falls between the two
    listener = asyncio.create_task(_listen(websocket, max_message))
    try:
        last = since
        for message in await asyncio.to_thread(registry.messages, task_id, since):
            await websocket.send_json(message)
            last = message["seq"]
        while not listener.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, listener}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            message = getter.result()
            if message["seq"] > last:
                await websocket.send_json(message)
                last = message["seq"]
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away mid-send
    finally:
        hub.unsubscribe(task_id, queue)
        listener.cancel()


async def _listen(websocket: WebSocket, max_message: int) -> None:
    """Read (and drop) what the client sends; return when it disconnects or sends too much."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        size = len(message.get("text") or "") + len(message.get("bytes") or b"")
        if size > max_message:
            await websocket.close(code=CLOSE_TOO_BIG, reason=f"message larger than {max_message} bytes")
            return

