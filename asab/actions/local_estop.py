"""The operator's e-stop without HTTP: a local socket every bench-owning process listens on.

``asab serve``, ``asab tenant`` and ``asab run`` open a bench; while it is open, a thread
listens on a Unix-domain socket in the per-user runtime folder (:func:`runtime_dir`; the
folder is 0700, the socket 0600, so only the operator's own account can reach it). ``asab
estop`` connects to every such socket (or only to the process working on one run or tenant
folder) and each process stops all its pumps and latches its e-stop
(:meth:`asab.actions.bench.Bench.emergency_stop`) before it answers. No HTTP server, token,
thread pool or network is involved: it works when the servers are flooded or hung.

Protocol: the client sends one JSON line ``{"reason": "..."}`` (≤ :data:`MAX_REQUEST` bytes);
the process answers one JSON line ``{"stopped": true, "pid": ..., "bench": ...}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from asab.actions.bench import Bench
from asab.errors import AsabError

log = logging.getLogger(__name__)

RUNTIME_ENV = "ASAB_RUNTIME_DIR"
"""Environment variable naming the folder of the control sockets (default: see runtime_dir)."""
MAX_REQUEST = 4096
"""Bytes read from one e-stop request at most."""
READ_TIMEOUT = 1.0
"""s a connected client has to send its request; the pumps are stopped either way."""
LOCAL_REASON = "local e-stop (asab estop)"


class LocalEstopError(AsabError):
    """The runtime folder is unsafe, or no process could be reached."""


@dataclass(frozen=True)
class Stopped:
    """One process's answer to ``asab estop``."""

    pid: int
    bench: str
    command: str
    state: str | None


def runtime_dir() -> Path:
    """The folder of the control sockets: ``$ASAB_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/asab``, else ``<tmp>/asab-<uid>``; created 0700.

    Raises:
        LocalEstopError: the folder exists but belongs to another user or is writable by
            others (a socket there could be someone else's).
    """
    base = os.environ.get(RUNTIME_ENV)
    if base:
        folder = Path(base)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        folder = Path(os.environ["XDG_RUNTIME_DIR"]) / "asab"
    else:
        folder = Path(tempfile.gettempdir()) / f"asab-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()  # a symlink planted by someone else is not our folder
    if stat.S_ISLNK(info.st_mode):
        raise LocalEstopError(f"{folder} is a symbolic link, not a private folder; remove it "
                              f"or set ${RUNTIME_ENV} to a folder only you can write")
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise LocalEstopError(f"{folder} is not a private folder of this user (owner uid "
                              f"{info.st_uid}, mode {stat.filemode(info.st_mode)}); set "
                              f"${RUNTIME_ENV} to a folder only you can write")
    return folder


@contextlib.contextmanager
def listening(bench: Bench, *, name: str = "", state: Path | None = None) -> Iterator[Path | None]:
    """Listen for local e-stops while the block runs; yields the socket path.

    Args:
        bench: stopped (:meth:`Bench.emergency_stop`) on each request.
        name: the bench's name, shown by ``asab estop``.
        state: the run or tenant folder this process works on (``asab estop --out``).

    A process that cannot listen (no Unix sockets on this platform, an unsafe runtime
    folder) logs why and goes on: the HTTP e-stop and SIGTERM still work.
    """
    if not hasattr(socket, "AF_UNIX"):  # pragma: no cover - Windows without AF_UNIX
        log.warning("local e-stop unavailable: this platform has no Unix-domain sockets")
        yield None
        return
    try:
        folder = runtime_dir()
    except (LocalEstopError, OSError) as exc:
        log.error("LOCAL E-STOP UNAVAILABLE (asab estop cannot reach this process): %s", exc)
        yield None
        return
    path = folder / f"estop-{os.getpid()}.sock"
    info = folder / f"estop-{os.getpid()}.json"
    server = _bind(path)
    info.write_text(json.dumps({"pid": os.getpid(), "bench": name,
                                "command": " ".join(sys.argv),
                                "state": str(state.resolve()) if state else None}))
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(server, bench, name, stop), daemon=True,
                              name="asab-local-estop")
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the accept() at once (Linux)
        server.close()
        thread.join(2.0)
        for p in (path, info):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _bind(path: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a stale socket of a dead process with our pid
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        server.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    server.listen(16)
    server.settimeout(0.5)
    return server


def _serve(server: socket.socket, bench: Bench, name: str, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        except OSError as exc:  # out of files, a client gone before accept: keep listening
            if stop.is_set():
                return
            log.warning("local e-stop: accept failed (%s); still listening", exc)
            time.sleep(0.05)
            continue
        with conn:
            try:
                _answer(conn, bench, name)
            except Exception:
                log.exception("local e-stop: answering a request failed")


def _answer(conn: socket.socket, bench: Bench, name: str) -> None:
    """Stop first, then read the reason (a slow or silent client costs only its reason)."""
    bench.emergency_stop(LOCAL_REASON)
    bench.cancel.set()
    reason = _read_reason(conn)
    if reason:
        bench.estop = f"{LOCAL_REASON}: {reason}"
    log.warning("local e-stop: pumps stopped (%s)", reason or "no reason given")
    reply = {"stopped": True, "pid": os.getpid(), "bench": name}
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(reply).encode() + b"\n")


def _read_reason(conn: socket.socket) -> str:
    conn.settimeout(READ_TIMEOUT)
    data = b""
    with contextlib.suppress(OSError):
        while b"\n" not in data and len(data) < MAX_REQUEST:
            chunk = conn.recv(MAX_REQUEST - len(data))
            if not chunk:
                break
            data += chunk
    try:
        reason = json.loads(data.split(b"\n", 1)[0] or b"{}").get("reason", "")
    except (ValueError, AttributeError):
        return ""
    text = str(reason)
    return "".join(c for c in text if c.isprintable())[:200]


def stop_all(reason: str = "", state: Path | None = None, timeout: float = 10.0) -> list[Stopped]:
    """Send the e-stop to every listening asab process (or only those on ``state``), to all
    of them at once.

    Args:
        reason: recorded with the latch (≤ 200 printable characters are kept).
        state: only processes whose state folder is this one.
        timeout: s to wait for the answers (a process answers once its pumps are stopped).

    Returns:
        The processes that answered (their pumps are stopped and the e-stop latched).

    Raises:
        LocalEstopError: a registered process that is alive did not answer (its pumps may
            still run: stop it another way), or no process is registered at all.
    """
    folder = runtime_dir()
    wanted = str(state.resolve()) if state else None
    targets = []
    for info_file in sorted(folder.glob("estop-*.json")):
        try:
            info = json.loads(info_file.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if wanted is None or info.get("state") == wanted:
            targets.append((info_file, pid, info))
    answers: dict[int, bool] = {}
    threads = [threading.Thread(target=lambda f=f, p=p: answers.__setitem__(
        p, _send(f.with_suffix(".sock"), reason, timeout))) for f, p, _ in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 1)
    stopped = [Stopped(p, str(i.get("bench", "")), str(i.get("command", "")), i.get("state"))
               for f, p, i in targets if answers.get(p)]
    silent = [p for f, p, _ in targets if not answers.get(p) and _alive(f, p)]
    if silent:
        raise LocalEstopError(
            f"asab process(es) {', '.join(map(str, silent))} did not answer the e-stop within "
            f"{timeout:g} s: their pumps may still be running; stop them another way (POST "
            "/estop, the hardware stop, or kill the process)"
            + (f"; stopped: {', '.join(str(s.pid) for s in stopped)}" if stopped else ""))
    if not stopped:
        where = f" on state folder {wanted}" if wanted else ""
        raise LocalEstopError(f"no running asab process{where} is registered in {folder}: "
                              "nothing to stop here (is the bench run by another user or "
                              "machine?)")
    return stopped


def _send(path: Path, reason: str, timeout: float) -> bool:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        client.connect(str(path))
        client.sendall(json.dumps({"reason": reason}).encode() + b"\n")
        data = b""
        while b"\n" not in data and time.monotonic() < deadline:
            chunk = client.recv(4096)
            if not chunk:
                break
            data += chunk
        return json.loads(data.split(b"\n", 1)[0]).get("stopped") is True
    except (OSError, ValueError):
        return False
    finally:
        client.close()


def _alive(info_file: Path, pid: int) -> bool:
    """Whether the registered process still runs; a dead one's registration is removed."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        pass
    except OSError:  # e.g. another user's pid: alive, not ours to judge
        return True
    for p in (info_file, info_file.with_suffix(".sock")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return False
