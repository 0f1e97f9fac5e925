"""The per-connection bounds of asab/servers/limits.py on a real uvicorn server: an idle or
slow request head is cut after the head timeout, a request in progress never is (pipelined
ones included), the connection cap evicts the oldest idle connection, bodies are capped
except on the paths that stop something."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request

import asab.servers.limits as limits
from asab.servers.limits import BodyLimitMiddleware


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/fast")
    async def fast() -> str:
        return "fast"

    @app.get("/slow")
    async def slow() -> str:
        await asyncio.sleep(1.5)
        return "slow"

    @app.post("/echo")
    async def echo(request: Request) -> int:
        return len(await request.body())

    @app.post("/pumps/stop")
    async def stop() -> str:
        return "stopped"

    app.add_middleware(BodyLimitMiddleware, default=1000)
    return app


@pytest.fixture(scope="module")
def port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_app(), log_level="warning", lifespan="off",
                            http=limits.guarded_protocol(head_timeout=0.5, max_connections=20))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(5)


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s


def _read_all(s: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_a_silent_connection_is_closed_after_the_head_timeout(port):
    s = _connect(port)
    t0 = time.monotonic()
    assert _read_all(s) == b""
    assert 0.4 < time.monotonic() - t0 < 2.0


def test_a_slow_head_is_closed_too(port):
    s = _connect(port)
    t0 = time.monotonic()
    for ch in b"GET /fast HTTP/1.1\r\nHo":
        try:
            s.send(bytes([ch]))
        except OSError:
            break
        time.sleep(0.05)
    assert _read_all(s) == b"" and time.monotonic() - t0 < 2.5


def test_a_pipelined_request_in_progress_is_not_cut(port):
    s = _connect(port)
    s.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\nHost: x\r\n"
              b"Connection: close\r\n\r\n")
    data = _read_all(s)
    assert data.count(b"HTTP/1.1 200") == 2 and b'"slow"' in data


def test_bodies_are_capped_but_stop_paths_are_not(port):
    s = _connect(port)
    body = b"x" * 5000
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + body)
    assert b"413" in s.recv(4096).split(b"\r\n")[0]
    s = _connect(port)
    s.sendall(b"POST /pumps/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
              b"Connection: close\r\n\r\n" + body)
    assert b"200" in _read_all(s).split(b"\r\n")[0]


def test_the_cap_evicts_the_oldest_idle_connection(port):
    held = [_connect(port) for _ in range(25)]
    time.sleep(0.2)
    newest = held[-1]
    newest.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"200" in _read_all(newest)
    closed = 0
    for s in held[:5]:
        s.settimeout(0.3)
        try:
            closed += s.recv(1) == b""
        except OSError:
            closed += 1
    assert closed == 5
