"""The service's guards: Host and Origin allowlists (DNS rebinding, cross-site WebSocket hijacking),
a bearer token compared in constant time, a request-body size limit, and path confinement for the
data and output paths a request names."""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rayfit.errors import ConfigError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_ENV = "RAYFIT_SERVICE_TOKEN"  # where the service and its clients find the bearer token
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
PUBLIC_PATHS = ("/", "/openapi.json", "/favicon.ico")  # the page and the schema hold no data
PUBLIC_PREFIXES = ("/static/",)
ALLOWED_SCHEMES = ("sklearn:",)  # data sources that are not files; any other URI is refused


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the service on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison: the time taken says nothing about how much of the token matched."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class Guard:
    """ASGI middleware in front of every HTTP request and WebSocket handshake."""

    app: ASGIApp
    allowed_hosts: set[str]
    token: str | None = None
    max_body: int = 1 << 20
    allowed_origins: set[str] = field(default_factory=set)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self.refusal(scope, headers)
        if problem is not None:
            status, message = problem
            return await refuse(scope, send, status, message)
        if scope["type"] == "http":
            body = await read_body(receive, headers, self.max_body)
            if body is None:
                return await refuse(scope, send, 413, f"request body larger than {self.max_body} bytes")
            return await self.app(scope, replay(body, receive), send)
        return await self.app(scope, receive, send)

    def refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        """(status, one-line reason) when the request must not reach the app, else None."""
        host = hostname(headers.get("host", ""))
        if host not in self.allowed_hosts:
            return 400, f"Host header {headers.get('host', '')!r} is not allowed (see --allowed-host)"
        origin = headers.get("origin")
        if origin is not None and not self.origin_allowed(origin):
            return 403, f"Origin {origin!r} is not allowed (see --allowed-origin)"
        path = scope.get("path", "")
        if self.token is None or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        if not token_matches(bearer(scope, headers), self.token):
            return 401, "missing or wrong bearer token (Authorization: Bearer TOKEN, or ?token= on the WebSocket)"
        return None

    def origin_allowed(self, origin: str) -> bool:
        if origin in self.allowed_origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and (parts.hostname or "") in self.allowed_hosts


def hostname(host_header: str) -> str:
    """The name of a Host header, without its port ('[::1]:8000' -> '::1')."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


def bearer(scope: Scope, headers: dict[str, str]) -> str | None:
    """The token a client sent: Authorization: Bearer, or ?token= (browsers' WebSockets cannot set headers)."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scope["type"] == "websocket":
        tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        return tokens[0] if tokens else None
    return None


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes | None:
    """The whole request body, or None once it passes `limit` bytes (told by Content-Length or counted)."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the app the body already read, then the server's own messages (a
    streamed response listens for the client's disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    """Answer `status` with {"detail": message}; a WebSocket handshake is closed before it opens
    (the server answers 403)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def confine(value: str, roots: list[Path], field: str, must_exist: bool = False) -> str:
    """`value` as an absolute path inside one of `roots` (a relative one is taken from the first);
    refused: '..', a URI scheme that is not allowed, a path outside every root, and a symlink that
    leads outside (the check is made on the resolved path)."""
    if value.startswith(ALLOWED_SCHEMES):
        return value
    if "://" in value or value.startswith("file:"):
        raise ConfigError(f"{field}: {value!r}: URI schemes are not allowed here; give a path under the server's roots")
    if "\x00" in value:
        raise ConfigError(f"{field}: the path holds a NUL character")
    path = Path(value)
    if ".." in path.parts:
        raise ConfigError(f"{field}: {value!r}: '..' is not allowed in paths")
    full = (path if path.is_absolute() else roots[0] / path).resolve()
    if not any(full.is_relative_to(root.resolve()) for root in roots):
        shown = ", ".join(str(r) for r in roots)
        raise ConfigError(f"{field}: {value!r} is outside the server's allowed folders ({shown})")
    if must_exist and not full.is_file():
        raise ConfigError(f"{field}: {value!r}: no such file under {roots[0]}")
    return str(full)
