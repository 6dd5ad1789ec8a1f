"""A Python client of `rayfit serve`: submit, list, inspect, pause, resume, cancel and watch tasks.

    client = ServiceClient("http://127.0.0.1:8000")            # token: RAYFIT_SERVICE_TOKEN
    task = client.submit({"name": "digits", "data": {"source": "sklearn:digits"}})
    for message in client.watch(task["task_id"]):
        print(message)                                           # ends at a final state
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from rayfit.errors import RayfitError
from rayfit.service.security import TOKEN_ENV
from rayfit.service.states import is_final


class ServiceError(RayfitError):
    """The service refused a request (its one-line reason), or could not be reached."""


class ServiceClient:
    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(f"--server {self.url}: cannot reach the service ({exc})") from exc
        if response.status_code >= 400:
            try:
                detail = response.json()["detail"]
            except (ValueError, KeyError, TypeError):
                detail = response.text[:200]
            raise ServiceError(f"{self.url}: {response.status_code}: {detail}")
        return response.json()

    def submit(self, experiment: dict[str, Any]) -> dict[str, Any]:
        """A native experiment (the YAML's content); the new task."""
        return self._call("POST", "/api/v1/runs", json=experiment)

    def submit_seed(self, flat: dict[str, Any]) -> dict[str, Any]:
        """The flat request format (experiments/seed_format.json); the new task."""
        return self._call("POST", "/api/v1/algorithm/epoch-train", json=flat)

    def runs(self, state: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/api/v1/runs", params={"state": state} if state else None)

    def run(self, task_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/runs/{task_id}")

    def progress(self, task_id: str) -> dict[str, Any]:
        return self._call("GET", f"/training/progress/{task_id}")

    def pause(self, task_id: str) -> dict[str, Any]:
        return self._call("POST", f"/training/pause/{task_id}")

    def resume(self, task_id: str) -> dict[str, Any]:
        return self._call("POST", f"/training/resume/{task_id}")

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self._call("POST", f"/training/cancel/{task_id}")

    def watch(self, task_id: str, since: int = 0, until_final: bool = True) -> Iterator[dict[str, Any]]:
        """The task's messages after `since`, live; stops after a final state unless told not to."""
        from websockets.exceptions import InvalidStatus, WebSocketException
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            with connect(self.ws_url(task_id, since), additional_headers=headers, max_size=1 << 22) as ws:
                for text in ws:
                    message = json.loads(text)
                    yield message
                    if until_final and is_final(message):
                        return
        except InvalidStatus as exc:
            raise ServiceError(f"{self.url}: the WebSocket was refused ({exc.response.status_code})") from exc
        except (OSError, WebSocketException) as exc:
            raise ServiceError(f"{self.url}: the WebSocket closed: {exc}") from exc

    def ws_url(self, task_id: str, since: int = 0) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, f"{parts.path}/ws/training/{task_id}", f"since={since}", ""))
