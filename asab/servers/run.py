"""Serve every server of one bench from one process: one asyncio loop, one uvicorn server per
app and port. Blocking device calls run in worker threads (FastAPI's thread pool for short
requests, one thread per job), so the loop keeps answering, e.g. ``/estop``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator, Mapping

import uvicorn
from fastapi import FastAPI

from asab.actions.bench import Bench
from asab.config.models import ServerSettings
from asab.errors import ConfigError
from asab.servers.actions import create_actions_app
from asab.servers.balance import create_balance_app
from asab.servers.common import ServerContext
from asab.servers.densimeter import create_densimeter_app
from asab.servers.jobs import JobManager
from asab.servers.limits import connection_budget, guarded_protocol
from asab.servers.pumps import create_pumps_app

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 8

KERNEL_BACKLOG = 4096
"""Connections the kernel queues per listening socket (capped by net.core.somaxconn), so that
a flood on one port does not make an e-stop there wait for a SYN retry."""

ACCEPT_BATCH = 128
"""Listen backlog, which asyncio also takes as the most connections accepted per readiness
event of one socket: a flood on one port then cannot queue thousands of callbacks ahead of an
e-stop arriving on another (measured: 2048 gave 1.7–3.3 s e-stop latency under a 30,000
connection flood, see tests/test_estop_flood.py)."""

GRACEFUL_SHUTDOWN = 5.0
"""s a stopping server waits for open connections (e.g. a live page's event stream, which
ends within 0.5 s of the stop) before it cancels them."""

FACTORIES: dict[str, Callable[[ServerContext], FastAPI]] = {
    "pumps": create_pumps_app, "balance": create_balance_app,
    "densimeter": create_densimeter_app, "actions": create_actions_app,
}
"""Server name (= field of :class:`~asab.config.models.ServerPorts`) → app factory."""


def resolve_token(settings: ServerSettings, environ: Mapping[str, str] | None = None) -> str:
    """The bearer token: ``[servers] token`` if set, else ``$<token_env>``.

    Raises:
        ConfigError: no token, one shorter than :data:`MIN_TOKEN_LENGTH` characters, or one
            holding white space or control characters (8 spaces would pass a length check
            and lock everyone out).
    """
    env = os.environ if environ is None else environ
    token = settings.token.get_secret_value() or env.get(settings.token_env, "")
    where = f"set ${settings.token_env} (or token in the servers section of bench.toml)"
    if token != token.strip() or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(f"the bearer token must not contain spaces or control characters "
                          f"(a header cannot carry them reliably): {where}")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"servers need a bearer token of at least {MIN_TOKEN_LENGTH} "
                          f"characters: {where}")
    return token


def create_apps(bench: Bench, token: str, keep_jobs: int = 200, history=None
                ) -> tuple[ServerContext, dict[str, FastAPI]]:
    """One context (bench + job manager) and every app on it, by server name.

    ``history``: a :class:`asab.servers.history.JobHistory` keeping every job's record (and
    listing the earlier ones), or None to keep jobs in memory only."""
    ctx = ServerContext(bench=bench, jobs=JobManager(bench, keep=keep_jobs, history=history),
                        token=token)
    return ctx, {name: factory(ctx) for name, factory in FACTORIES.items()}


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve_all` (several servers share
    one loop, and uvicorn's own handlers would only reach the last one)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_servers(apps: Mapping[str, FastAPI], settings: ServerSettings,
                  log_level: str = "warning") -> list[uvicorn.Server]:
    """One uvicorn server per app on ``settings.host`` and its port from ``settings.ports``,
    each with the request-head timeout, keep-alive time and connection cap of ``settings``
    (:mod:`asab.servers.limits`; the caps together stay below the open-file limit)."""
    ports = settings.ports.model_dump()
    budget = connection_budget(len(apps), settings.max_connections)
    protocol = guarded_protocol(settings.head_timeout, budget)
    return [_Server(uvicorn.Config(app, host=settings.host, port=ports[name],
                                   log_level=log_level, access_log=False, lifespan="off",
                                   http=protocol, timeout_keep_alive=settings.keep_alive,
                                   backlog=ACCEPT_BATCH,
                                   timeout_graceful_shutdown=GRACEFUL_SHUTDOWN))
            for name, app in apps.items()]


def bind(servers: list[uvicorn.Server]) -> list[socket.socket]:
    """Listen on every server's host and port (all or none).

    Raises:
        ConfigError: a port cannot be bound (in use, or not allowed), naming it.
    """
    sockets: list[socket.socket] = []
    for server in servers:
        host, port = server.config.host, server.config.port
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(ACCEPT_BATCH)
        except OSError as exc:
            sock.close()
            for s in sockets:
                s.close()
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        sockets.append(sock)
    return sockets


async def serve_all(servers: list[uvicorn.Server], sockets: list[socket.socket],
                    on_started: Callable[[], None] | None = None,
                    on_stop: Callable[[], None] | None = None) -> None:
    """Run ``servers`` (each on its bound socket) on the running loop until SIGINT/SIGTERM
    (``on_stop`` is called first then, e.g. to end the live page's event streams)."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if on_stop is not None:
            on_stop()
        for s in servers:
            s.should_exit = True
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in zip(servers, sockets)]
    while not all(s.started for s in servers) and not any(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    for sock in sockets:  # asyncio set the queue to the accept batch; let the kernel queue more
        with contextlib.suppress(OSError):
            sock.listen(KERNEL_BACKLOG)
    if on_started is not None and all(s.started for s in servers):
        on_started()
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    stop()
    await asyncio.gather(*tasks, return_exceptions=True)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (not on Windows), else asyncio's own.

    Measured with tests/test_estop_flood.py on 2 cores: the e-stop on the flooded port
    answered in 0.9–1.0 s on asyncio's loop and in 0.28–0.37 s on uvloop (the other ports:
    0.16–0.22 s against 5–45 ms): uvloop drains the accept queue about three times faster."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows, or uvloop not installed
        return None
    return uvloop.new_event_loop


def run_servers(bench: Bench, settings: ServerSettings, token: str,
                on_started: Callable[[], None] | None = None, log_level: str = "warning",
                history=None) -> None:
    """Serve every app of ``bench`` until interrupted; then cancel jobs and stop the pumps.

    ``history``: see :func:`create_apps` (``asab serve`` keeps its jobs in ``--out``).

    Raises:
        ConfigError: a port cannot be bound (nothing is served then).
    """
    ctx, apps = create_apps(bench, token, settings.max_jobs, history)
    servers = build_servers(apps, settings, log_level)
    sockets = bind(servers)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve_all(servers, sockets, on_started, ctx.stopping.set))
    finally:
        ctx.stopping.set()
        ctx.jobs.shutdown()
        for sock in sockets:
            sock.close()
