"""A simulated serial device on a TCP port: what pyserial's ``socket://HOST:PORT`` reaches.

:class:`SerialBridge` serves one :class:`~simulators.urlhandler.SerialDevice` (an object with
``receive(bytes)`` and ``transmit() -> bytes``, e.g. the Entris II simulator) on its own TCP
port. Bytes a client writes go to ``device.receive``; whatever ``device.transmit`` returns is
sent back. The device answers in its own (simulated) time, so the bridge polls ``transmit``
every ``poll`` s of wall-clock time while a client is connected.

A serial line has one host: a second client is refused (its connection closed at once) while
one is attached. Bytes the device sent while nobody was attached are dropped when a client
connects, as on a real line with nothing plugged in. There is no authentication (pyserial's
``socket://`` carries raw bytes only): the bridge binds the loopback interface by default.
"""

from __future__ import annotations

import logging
import select
import socket
import socketserver
import threading
from typing import Any

from simulators.urlhandler import SerialDevice

log = logging.getLogger(__name__)

DEFAULT_POLL = 0.002
"""s of wall-clock time between looks at the device's output while a client is attached
(≈ 2 characters at 9600 baud; a design choice: fast enough not to slow the drivers down)."""

CHUNK = 4096
"""Bytes read from the socket at once."""


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], bridge: "SerialBridge") -> None:
        self.bridge = bridge
        super().__init__(address, _Handler)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        bridge = self.server.bridge
        if not bridge._attach(self.request):
            log.warning("%s: refused a second client %s (one host per serial line)",
                        bridge.name, self.client_address)
            return
        try:
            bridge._pump_bytes(self.request)
        finally:
            bridge._detach(self.request)


class SerialBridge:
    """Serve ``device`` on ``host:port`` (port 0 picks a free one) until :meth:`close`.

    Args:
        device: the simulated serial device.
        name: device name for log messages.
        host: interface to bind; loopback by default.
        port: TCP port; 0 lets the OS choose (see :attr:`port`).
        poll: s between looks at the device's output (see :data:`DEFAULT_POLL`).

    Raises:
        OSError: the port cannot be bound.
    """

    def __init__(self, device: SerialDevice, name: str, host: str = "127.0.0.1", port: int = 0,
                 poll: float = DEFAULT_POLL) -> None:
        if poll <= 0:
            raise ValueError("poll must be > 0")
        self.device = device
        self.name = name
        self.poll = poll
        self._lock = threading.Lock()
        self._client: socket.socket | None = None
        self._closing = threading.Event()
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The TCP port actually bound."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The pyserial URL of this device: ``socket://HOST:PORT``."""
        return f"socket://{self.host}:{self.port}"

    def start(self) -> "SerialBridge":
        """Accept clients on a background thread (idempotent); returns ``self``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                            name=f"serial-{self.name}", daemon=True)
            self._thread.start()
            log.info("%s: serial simulator on %s", self.name, self.url)
        return self

    def close(self) -> None:
        """Stop accepting, disconnect the client, release the port (idempotent)."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=2.0)
        self._server.server_close()
        with self._lock:
            client = self._client
        if client is not None:
            _close_quietly(client)

    def __enter__(self) -> "SerialBridge":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ connection
    def _attach(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._client is not None or self._closing.is_set():
                return False
            self._client = sock
        stale = self.device.transmit()
        if stale:
            log.debug("%s: dropped %d bytes sent while no host was attached", self.name, len(stale))
        log.info("%s: host attached from %s", self.name, sock.getpeername())
        return True

    def _detach(self, sock: socket.socket) -> None:
        with self._lock:
            if self._client is sock:
                self._client = None
        log.info("%s: host detached", self.name)

    def _pump_bytes(self, sock: socket.socket) -> None:
        """Move bytes both ways until the client hangs up or the bridge closes."""
        while not self._closing.is_set():
            readable, _, _ = select.select([sock], [], [], self.poll)
            if readable:
                try:
                    data = sock.recv(CHUNK)
                except OSError:
                    return
                if not data:
                    return
                self.device.receive(data)
            out = self.device.transmit()
            if out:
                try:
                    sock.sendall(out)
                except OSError:
                    return


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
