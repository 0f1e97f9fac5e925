"""Bounds on what one client can hold of a server: connections, time, body size.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but a connection
that sends no bytes at all, or a request head one byte at a time, is kept forever, and
nothing bounds how many connections a server holds. Four servers share one process and its
limit of open files: idle connections on one port could make the e-stop on another
unreachable. Here:

* :func:`guarded_protocol` — uvicorn's h11 protocol with a *request-head timeout* (a complete
  request head within ``head_timeout`` s of connecting or of the previous response, else the
  connection is closed) and a *connection cap* per server (beyond ``max_connections`` the
  oldest connection with no request in progress is closed to admit the new one, so a new
  client — an operator's e-stop — always gets in);
* :class:`BodyLimitMiddleware` — request bodies are capped per path (413 beyond the cap);
* :func:`connection_budget` — the caps, sized below the process's limit of open files (the
  soft limit is raised to the hard one first).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 5.0
"""s a client has to send a complete request head (after connecting or after a response)."""
KEEP_ALIVE = 5
"""s an idle keep-alive connection is kept between requests (uvicorn's timeout_keep_alive)."""
MAX_CONNECTIONS = 1000
"""Connections one server holds at most (fewer when the file limit is lower)."""
RESERVED_FILES = 256
"""Open files kept free of client connections: device ports, logs, journal, records."""
MAX_BODY = 64 * 1024
"""Bytes of request body accepted by default (every asab request is a small JSON object)."""


def connection_budget(servers: int, wanted: int = MAX_CONNECTIONS) -> int:
    """Connections each of ``servers`` servers may hold so that all of them, plus
    :data:`RESERVED_FILES`, stay below the process's limit of open files.

    Raises the soft limit to the hard limit first (both are read with :mod:`resource`).

    Returns:
        At least 16.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # pragma: no cover - platform refuses
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, (soft - RESERVED_FILES) // max(1, servers)))


def guarded_protocol(head_timeout: float = HEAD_TIMEOUT,
                     max_connections: int = MAX_CONNECTIONS) -> type[H11Protocol]:
    """A uvicorn HTTP protocol class (``uvicorn.Config(http=...)``) with a request-head
    timeout and a connection cap (see the module docstring)."""
    if not (0 < head_timeout <= 3600) or max_connections < 1:
        raise ValueError("head_timeout must be in (0, 3600] s and max_connections ≥ 1")

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            order = _order(self.server_state)
            order[self] = None
            self._head_timer: asyncio.TimerHandle | None = None
            self._arm()
            if len(order) > max_connections:
                _evict(order, keep=self)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            _order(self.server_state).pop(self, None)
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            """Expect a new request head within the timeout (a new cycle replaces this one)."""
            if self._head_timer is not None:
                self._head_timer.cancel()
            armed = self.cycle
            self._head_timer = self.loop.call_later(head_timeout, self._expire, armed)

        def _expire(self, armed: Any) -> None:
            # no new request since arming, and none in progress (a pipelined request may
            # have started before the timer was armed: never cut a running request)
            if self.cycle is armed and not self.busy() and not self.transport.is_closing():
                self.transport.close()

        def busy(self) -> bool:
            """A request is in progress (its head arrived, its response is not done)."""
            return self.cycle is not None and not self.cycle.response_complete

    return GuardedH11Protocol


def _order(state: Any) -> OrderedDict:
    order = getattr(state, "asab_connection_order", None)
    if order is None:
        order = OrderedDict()
        state.asab_connection_order = order
    return order


def _evict(order: OrderedDict, keep: Any) -> None:
    """Close the oldest connection that has no request in progress (never ``keep``)."""
    for protocol in order:
        if protocol is not keep and not protocol.busy():
            order.pop(protocol)
            protocol.transport.close()
            return


STOP_SUFFIXES = ("/stop", "/cancel", "/estop")
"""Paths that stop something act whatever their body: never capped (they read no body)."""


class BodyLimitMiddleware:
    """ASGI middleware: a request body longer than its path's cap gets 413 and is not read on.

    A declared ``Content-Length`` over the cap is refused before anything is read; a body
    that grows past the cap while streaming (chunked) is cut off: the app sees the client
    disconnect and the client gets the 413.

    Args:
        app: the ASGI app.
        default: cap in bytes for every path not in ``per_path``.
        per_path: path → cap in bytes, or ``None`` for a path that reads its body itself
            (``POST /estop``: it must act whatever the body, and bounds its own read).
    """

    def __init__(self, app: ASGIApp, default: int = MAX_BODY,
                 per_path: Mapping[str, int | None] | None = None) -> None:
        self.app, self.default, self.per_path = app, default, dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        cap = None if path.endswith(STOP_SUFFIXES) else self.per_path.get(path, self.default)
        if scope["type"] != "http" or cap is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            await _too_large(send, cap)
            return
        state = {"read": 0, "over": False, "started": False}

        async def limited_receive() -> Message:
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > cap:
                    state["over"] = True
                    if not state["started"]:
                        state["started"] = True
                        await _too_large(send, cap)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["over"]:
                return  # the 413 went out already
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


async def _too_large(send: Send, cap: int) -> None:
    body = (b'{"error": {"type": "PayloadTooLarge", "message": "request body over '
            + str(cap).encode() + b' bytes"}}')
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
