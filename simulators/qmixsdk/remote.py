"""The stand-in ``qmixsdk`` across a process boundary: line-delimited JSON RPC over TCP.

The simulator process keeps the real stand-in objects (:func:`simulators.qmixsdk.make_qmixsdk`
over the world) and serves them with :class:`SdkServer`; another process imports a generated
``qmixsdk`` shim (:func:`write_shim`) whose ``qmixbus``/``qmixpump``/``qmixvalve`` come from
:func:`client_namespace`: proxy classes with the same names and methods that forward each call.

Protocol (UTF-8 JSON, one object per ``\\n``-terminated line, one request at a time)::

    client → {"token": "<secret>"}                         (first line: authentication)
    server ← {"ok": true, "server": "asab qmixsdk simulator"}
    client → {"id": 8, "op": "call", "cls": "Pump", "obj": 3, "method": "aspirate",
              "args": [1.0, 0.1]}                            (instance method)
    client → {"id": 9, "op": "call", "cls": "Pump", "method": "stop_all_pumps", "args": []}
    server ← {"id": 8, "result": <value>}
    server ← {"id": 8, "error": {"type": "DeviceError", "message": "...", "errorcode": -1007}}

Handles: constructing a proxy (``Pump()``) does no I/O, as with the vendor's classes; the
client numbers its objects 1, 2, … and the server creates the stand-in object the first time
a call names a new positive number. Objects the server returns (``Pump.get_valve()``) get
negative numbers. Handles belong to their connection.

Values: JSON scalars and lists; a stand-in object as ``{"__handle__": n, "cls": "Valve"}``;
a named tuple or dataclass (``SyringeParam``, ``Event``) as ``{"__record__": "Event",
"fields": {...}}``. Only the public methods of ``Bus``, ``Pump`` and ``Valve`` can be called.

When a connection ends while the bus it opened is still open, the server stops every pump and
closes that bus (this simulator's safety choice), so a client that crashed never leaves pumps
running and the next client can open the bus again.

``qmixbus.DeviceError`` crosses the wire with its ``errorcode``; a lost or refused connection
becomes ``DeviceError`` with :data:`RPC_CONNECTION_ERROR`, so the driver reports it as a
transport failure like any other SDK failure.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import secrets
import socket
import socketserver
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from simulators.qmixsdk._core import BusBase, DeviceError, Event, TimeUnit, UnitPrefix, VolumeUnit
from simulators.qmixsdk._pump import PumpBase, SyringeParam
from simulators.qmixsdk._valve import ValveBase

log = logging.getLogger(__name__)

RPC_CONNECTION_ERROR = -2001
"""``DeviceError.errorcode`` when the simulator cannot be reached (this stand-in's own code)."""

CLIENT_TIMEOUT = 30.0
"""s a client waits for one answer; every SDK call of the stand-in returns at once, so a
slower answer means the simulator is gone or hung."""

SESSION_END_TIMEOUT = 2.0
"""s :meth:`SdkServer.close` waits for the connections it hung up to finish their last call."""

MAX_LINE = 1 << 20
"""Bytes allowed in one request line."""

CLASSES: dict[str, tuple[str, type]] = {
    "Bus": ("qmixbus", BusBase),
    "Pump": ("qmixpump", PumpBase),
    "Valve": ("qmixvalve", ValveBase),
}
"""Class name → (SDK module, stand-in base class) of every class served."""

RECORDS: dict[str, Any] = {"SyringeParam": SyringeParam, "Event": Event}
"""Named tuples / dataclasses rebuilt on the client side by name."""

_SAFE_ERRORS: dict[str, type[Exception]] = {
    "TypeError": TypeError, "ValueError": ValueError, "AttributeError": AttributeError}


def public_methods(base: type) -> dict[str, str]:
    """``{name: "instance" | "class"}`` for the public callables of a stand-in class."""
    out: dict[str, str] = {}
    for name in dir(base):
        if name.startswith("_"):
            continue
        raw = inspect.getattr_static(base, name)
        if isinstance(raw, (classmethod, staticmethod)):
            out[name] = "class"
        elif inspect.isfunction(raw):
            out[name] = "instance"
    return out


# =========================================================================== server
class SdkServer:
    """Serve a stand-in SDK namespace (``make_qmixsdk``'s result) on ``host:port``.

    Args:
        sdk: ``SimpleNamespace(qmixbus=, qmixpump=, qmixvalve=)`` of the stand-in.
        token: secret a client must send first.
        host: interface to bind (loopback by default); port 0 lets the OS choose.

    Raises:
        OSError: the port cannot be bound.
    """

    def __init__(self, sdk: SimpleNamespace, token: str, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        if not token:
            raise ValueError("an RPC token is required")
        self.token = token
        self.classes = {name: getattr(getattr(sdk, module), name)
                        for name, (module, _) in CLASSES.items()}
        self.methods = {name: public_methods(base) for name, (_, base) in CLASSES.items()}
        self._server = _RpcTcpServer((host, port), self)
        self._thread: threading.Thread | None = None
        self._sessions: set["_Session"] = set()
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    def start(self) -> "SdkServer":
        """Accept clients on a background thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                            name="qmixsdk-rpc", daemon=True)
            self._thread.start()
            log.info("qmixsdk simulator on %s:%d", self.host, self.port)
        return self

    def close(self) -> None:
        """Stop accepting, end every session (closing the buses they opened), free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=2.0)
            self._thread = None
        self._server.server_close()
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.hang_up()
        deadline = time.monotonic() + SESSION_END_TIMEOUT
        while self._sessions and time.monotonic() < deadline:  # a call in progress finishes
            time.sleep(0.01)

    def _add(self, session: "_Session") -> None:
        with self._lock:
            self._sessions.add(session)

    def _remove(self, session: "_Session") -> None:
        with self._lock:
            self._sessions.discard(session)


class _RpcTcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: SdkServer) -> None:
        self.owner = owner
        super().__init__(address, _Session)


class _Session(socketserver.StreamRequestHandler):
    """One client connection: its handles, and the bus it opened (closed when it leaves)."""

    server: _RpcTcpServer

    def setup(self) -> None:
        super().setup()
        self.owner = self.server.owner
        self.handles: dict[int, Any] = {}
        self.kinds: dict[int, str] = {}
        self.open_bus: Any = None

    def handle(self) -> None:
        self.owner._add(self)
        try:
            if not self._authenticate():
                return
            while True:
                line = self.rfile.readline(MAX_LINE)
                if not line:
                    return
                self._send(self._answer(line))
        except OSError:
            return
        finally:
            self._release_bus()
            self.owner._remove(self)

    def hang_up(self) -> None:
        """Close this connection from the server side."""
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _authenticate(self) -> bool:
        try:
            hello = json.loads(self.rfile.readline(MAX_LINE) or b"null")
        except ValueError:
            hello = None
        offered = hello.get("token") if isinstance(hello, dict) else None
        if not isinstance(offered, str) or not secrets.compare_digest(
                offered.encode("utf-8", "surrogatepass"), self.owner.token.encode()):
            log.warning("qmixsdk simulator: refused client %s (bad token)", self.client_address)
            self._send({"ok": False, "error": "bad token"})
            return False
        self._send({"ok": True, "server": "asab qmixsdk simulator"})
        return True

    def _send(self, message: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(message).encode("utf-8") + b"\n")
        self.wfile.flush()

    def _answer(self, line: bytes) -> dict[str, Any]:
        rid = None
        try:
            request = json.loads(line)
            rid = request.get("id")
            return {"id": rid, "result": self._encode(self._dispatch(request))}
        except DeviceError as exc:
            return {"id": rid, "error": {"type": "DeviceError", "message": str(exc),
                                         "errorcode": exc.errorcode}}
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
            kind = type(exc).__name__ if type(exc).__name__ in _SAFE_ERRORS else "RuntimeError"
            log.debug("qmixsdk simulator: request %r failed: %r", line[:200], exc)
            return {"id": rid, "error": {"type": kind, "message": str(exc)}}

    def _dispatch(self, request: dict[str, Any]) -> Any:
        op, kind = request.get("op"), request.get("cls")
        if kind not in self.owner.classes:
            raise ValueError(f"unknown class {kind!r}")
        cls = self.owner.classes[kind]
        if op != "call":
            raise ValueError(f"unknown op {op!r}")
        method = request.get("method")
        scope = self.owner.methods[kind].get(method)
        args = [self._decode(a) for a in request.get("args", [])]
        if scope is None:
            raise AttributeError(f"{kind} has no method {method!r}")
        if scope == "class":
            return getattr(cls, method)(*args)
        obj = self._object(kind, request.get("obj"))
        result = getattr(obj, method)(*args)
        self._track_bus(kind, method, obj)
        return result

    def _object(self, kind: str, handle: Any) -> Any:
        """The object behind ``handle``; a new positive number makes a new ``kind``."""
        if not isinstance(handle, int) or isinstance(handle, bool):
            raise ValueError(f"bad handle {handle!r}")
        if handle not in self.handles and handle > 0:
            self.handles[handle], self.kinds[handle] = self.owner.classes[kind](), kind
        if self.kinds.get(handle) != kind:
            raise ValueError(f"no {kind} handle {handle!r} on this connection")
        return self.handles[handle]

    def _track_bus(self, kind: str, method: str, obj: Any) -> None:
        if kind == "Bus" and method == "open":
            self.open_bus = obj
        elif kind == "Bus" and method == "close" and obj is self.open_bus:
            self.open_bus = None

    def _release_bus(self) -> None:
        """The client left with its bus open: stop every pump and close the bus."""
        bus, self.open_bus = self.open_bus, None
        if bus is None:
            return
        log.warning("qmixsdk simulator: client left with the bus open; stopping pumps, closing it")
        try:
            bus.close()
        except DeviceError as exc:
            log.error("qmixsdk simulator: closing the abandoned bus failed: %s", exc)

    def _encode(self, value: Any) -> Any:
        for kind, cls in self.owner.classes.items():
            if isinstance(value, cls):
                handle = -(len(self.handles) + 1)
                self.handles[handle], self.kinds[handle] = value, kind
                return {"__handle__": handle, "cls": kind}
        if isinstance(value, tuple) and hasattr(value, "_asdict"):
            return {"__record__": type(value).__name__, "fields": value._asdict()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {"__record__": type(value).__name__, "fields": dataclasses.asdict(value)}
        if isinstance(value, (list, tuple)):
            return [self._encode(v) for v in value]
        return value

    def _decode(self, value: Any) -> Any:
        if isinstance(value, dict) and "__handle__" in value:
            obj = self.handles.get(value["__handle__"])
            if obj is None:
                raise ValueError(f"no handle {value['__handle__']!r} on this connection")
            return obj
        return value


# =========================================================================== client
class Connection:
    """The client end: one socket, one request at a time, connected on first use.

    Args:
        host, port: where the :class:`SdkServer` listens.
        token: its secret.
        timeout: s to wait for one answer (see :data:`CLIENT_TIMEOUT`).
    """

    def __init__(self, host: str, port: int, token: str, timeout: float = CLIENT_TIMEOUT) -> None:
        self.address = (host, int(port))
        self._token = token
        self._timeout = timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._next_id = 0
        self._next_handle = 0

    def request(self, **message: Any) -> Any:
        """Send one request, return its decoded result.

        Raises:
            DeviceError: the SDK call failed (its ``errorcode``), or the simulator cannot be
                reached (:data:`RPC_CONNECTION_ERROR`).
        """
        with self._lock:
            self._next_id += 1
            message["id"] = self._next_id
            try:
                self._ensure_connected()
                self._write(message)
                answer = self._read()
            except (OSError, ValueError) as exc:
                self._drop()
                host, port = self.address
                raise DeviceError(f"qmixsdk simulator at {host}:{port} unreachable: {exc}",
                                  RPC_CONNECTION_ERROR) from exc
        if "error" in answer:
            raise _remote_error(answer["error"])
        return answer.get("result")

    def new_handle(self) -> int:
        """A fresh positive object number (see the module docstring)."""
        with self._lock:
            self._next_handle += 1
            return self._next_handle

    def close(self) -> None:
        """Hang up (the server then closes a bus this connection left open)."""
        with self._lock:
            self._drop()

    def _ensure_connected(self) -> None:
        if self._sock is not None:
            return
        self._sock = socket.create_connection(self.address, timeout=self._timeout)
        self._file = self._sock.makefile("rwb")
        self._write({"token": self._token})
        hello = self._read()
        if not hello.get("ok"):
            raise ConnectionRefusedError(f"simulator refused the connection: {hello.get('error')}")

    def _write(self, message: dict[str, Any]) -> None:
        self._file.write(json.dumps(message).encode("utf-8") + b"\n")
        self._file.flush()

    def _read(self) -> dict[str, Any]:
        line = self._file.readline(MAX_LINE)
        if not line:
            raise ConnectionResetError("connection closed by the simulator")
        return json.loads(line)

    def _drop(self) -> None:
        for closable in (self._file, self._sock):
            if closable is not None:
                try:
                    closable.close()
                except OSError:
                    pass
        self._sock = self._file = None


def _remote_error(error: dict[str, Any]) -> Exception:
    if error.get("type") == "DeviceError":
        return DeviceError(str(error.get("message", "")), int(error.get("errorcode", 0)))
    return _SAFE_ERRORS.get(str(error.get("type")), RuntimeError)(str(error.get("message", "")))


class _Proxy:
    """Base of the client classes: an instance holds a server-side handle number."""

    _conn: Connection
    _kind: str
    _registry: dict[str, type["_Proxy"]]

    def __init__(self) -> None:
        self._handle = self._conn.new_handle()

    @classmethod
    def _bound(cls, handle: int) -> "_Proxy":
        obj = cls.__new__(cls)
        obj._handle = handle
        return obj

    def __repr__(self) -> str:
        return f"<remote {self._kind} #{self._handle}>"


def _instance_method(name: str) -> Any:
    def method(self: _Proxy, *args: Any) -> Any:
        result = self._conn.request(op="call", cls=self._kind, obj=self._handle, method=name,
                                    args=[_encode_arg(a) for a in args])
        return _decode_result(result, self._registry)
    method.__name__ = name
    return method


def _class_method(name: str) -> Any:
    def method(cls: type[_Proxy], *args: Any) -> Any:
        result = cls._conn.request(op="call", cls=cls._kind, method=name,
                                   args=[_encode_arg(a) for a in args])
        return _decode_result(result, cls._registry)
    method.__name__ = name
    return classmethod(method)


def _encode_arg(value: Any) -> Any:
    if isinstance(value, _Proxy):
        return {"__handle__": value._handle, "cls": value._kind}
    return value


def _decode_result(value: Any, registry: dict[str, type[_Proxy]]) -> Any:
    if isinstance(value, dict) and "__handle__" in value:
        return registry[value["cls"]]._bound(int(value["__handle__"]))
    if isinstance(value, dict) and "__record__" in value:
        factory = RECORDS.get(value["__record__"])
        fields = value.get("fields", {})
        return factory(**fields) if factory else SimpleNamespace(**fields)
    if isinstance(value, list):
        return [_decode_result(v, registry) for v in value]
    return value


def client_namespace(host: str, port: int, token: str,
                     timeout: float = CLIENT_TIMEOUT) -> SimpleNamespace:
    """``SimpleNamespace(qmixbus=, qmixpump=, qmixvalve=, connection=)`` forwarding to a server.

    No I/O happens here: the connection opens on the first call (``Bus()``, ...). The enums
    (``UnitPrefix``, ``TimeUnit``, ``VolumeUnit``) and ``DeviceError`` are the stand-in's own.
    """
    conn = Connection(host, port, token, timeout)
    registry: dict[str, type[_Proxy]] = {}
    for kind, (_, base) in CLASSES.items():
        attrs: dict[str, Any] = {"_conn": conn, "_kind": kind, "_registry": registry,
                                 "__module__": __name__}
        for name, scope in public_methods(base).items():
            attrs[name] = _class_method(name) if scope == "class" else _instance_method(name)
        registry[kind] = type(kind, (_Proxy,), attrs)
    qmixbus = SimpleNamespace(Bus=registry["Bus"], DeviceError=DeviceError, UnitPrefix=UnitPrefix,
                              TimeUnit=TimeUnit, Event=Event)
    qmixpump = SimpleNamespace(Pump=registry["Pump"], VolumeUnit=VolumeUnit, SyringeParam=SyringeParam)
    qmixvalve = SimpleNamespace(Valve=registry["Valve"])
    return SimpleNamespace(qmixbus=qmixbus, qmixpump=qmixpump, qmixvalve=qmixvalve, connection=conn)


SHIM_TEMPLATE = '''"""qmixsdk shim written by the asab bench simulator: every call goes to {host}:{port}.

Put this file's parent folder on sys.path (``[cetoni] sdk_path``) and
``from qmixsdk import qmixbus, qmixpump, qmixvalve`` as with the vendor's wrapper.
"""

from simulators.qmixsdk.remote import client_namespace as _client_namespace

_sdk = _client_namespace({host!r}, {port!r}, {token!r})
qmixbus = _sdk.qmixbus
qmixpump = _sdk.qmixpump
qmixvalve = _sdk.qmixvalve
'''


def write_shim(folder: str | Path, host: str, port: int, token: str) -> Path:
    """Write the ``qmixsdk`` shim package into ``folder`` (created); return ``folder``.

    ``folder`` is what ``CetoniSettings.sdk_path`` must name. The file is readable by its
    owner only, since it holds the server's token.
    """
    package = Path(folder) / "qmixsdk"
    package.mkdir(parents=True, exist_ok=True)
    init = package / "__init__.py"
    init.write_text(SHIM_TEMPLATE.format(host=host, port=port, token=token), encoding="utf-8")
    init.chmod(0o600)
    return Path(folder)
