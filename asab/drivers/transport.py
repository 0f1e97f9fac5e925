"""Serial transport for every serial driver: pyserial ``serial_for_url`` plus optional recording.

A configuration points a driver at a real port (``/dev/ttyUSB0``, ``COM3``), at
``socket://127.0.0.1:PORT`` (``asab simulate``) or at any other pyserial URL handler; the driver
code is the same for all of them. With ``SerialSettings.record`` set, every exchange is also
appended to a JSON-lines file — the way to capture golden traffic on a real bench.

:class:`SerialTransport` is the one IO path of every serial driver: :meth:`~SerialTransport.exchange`
(lock, discard stale input, write, read until the terminator, timeout, typed errors naming the
port and the command) and, for a device that prints by itself, :meth:`~SerialTransport.listen`.
The drivers keep only their codecs (frames in, frames out) and the protocol logic.

Record format (one JSON object per line)::

    {"t": 1732180000.123, "device": "balance", "dir": "tx", "hex": "1b500d0a", "text": "\\u001bP\\r\\n"}

``t`` is wall-clock epoch seconds, ``dir`` is ``tx`` (host → device) or ``rx`` (device → host),
``hex`` the exact bytes and ``text`` the same bytes decoded as Latin-1 (lossless) for reading.
Empty reads (timeouts) are not recorded.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import serial

from asab.config.models import SerialSettings
from asab.errors import TransportError, TransportTimeout

MIN_READ_TIMEOUT = 1e-3
"""s; shortest read timeout set on a port (a 0 timeout would make pyserial return at once)."""


def open_serial(settings: SerialSettings, device: str) -> serial.SerialBase:
    """Open ``settings.url`` with the configured line settings (recording if configured).

    Args:
        settings: URL, baud rate, byte size, parity, stop bits, read timeout in s, and the
            optional JSON-lines ``record`` path.
        device: device name used in errors and records.

    Returns:
        An open pyserial port object (a :class:`RecordingSerial` wrapper when recording).

    Raises:
        TransportError: the port cannot be opened or the record file cannot be written.
    """
    try:
        port = serial.serial_for_url(
            settings.url, baudrate=settings.baudrate, bytesize=settings.bytesize,
            parity=settings.parity, stopbits=settings.stopbits, timeout=settings.timeout,
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        raise TransportError(device, f"cannot open {settings.url}: {exc}") from exc
    if settings.record:
        try:
            return RecordingSerial(port, Path(settings.record), device)
        except OSError as exc:
            port.close()
            raise TransportError(device, f"cannot open record file {settings.record}: {exc}") from exc
    return port


class RecordingSerial:
    """Wraps an open pyserial port; every write and every non-empty read is appended to a file.

    Only the pyserial methods asab's drivers use are forwarded with recording (``write``,
    ``read``, ``read_until``, ``readline``); any other attribute is passed through unchanged.

    Args:
        port: the open port.
        path: JSON-lines file, appended to (created with its folder if missing).
        device: device name written into each record.
    """

    def __init__(self, port: serial.SerialBase, path: Path, device: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._port = port
        self._device = device
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def _record(self, direction: str, data: bytes) -> None:
        if not data:
            return
        entry = {"t": round(time.time(), 6), "device": self._device, "dir": direction,
                 "hex": data.hex(), "text": data.decode("latin-1")}
        with self._lock:
            self._file.write(json.dumps(entry) + "\n")
            self._file.flush()

    def write(self, data: bytes) -> int | None:
        self._record("tx", bytes(data))
        return self._port.write(data)

    def read(self, size: int = 1) -> bytes:
        data = self._port.read(size)
        self._record("rx", data)
        return data

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        data = self._port.read_until(expected, size)
        self._record("rx", data)
        return data

    def readline(self, size: int | None = None) -> bytes:
        return self.read_until(b"\n", size)

    def close(self) -> None:
        try:
            self._port.close()
        finally:
            with self._lock:
                self._file.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._port, name, value)


class SerialTransport:
    """One device's serial line; every byte a serial driver sends or receives passes here.

    Thread-safe: :attr:`lock` (re-entrant) is held for each exchange; a driver holds it too
    across a sequence of exchanges that must not be interleaved (a whole measurement, say).

    Args:
        port: an open pyserial port (or :class:`RecordingSerial`).
        device: configured device name, put into every error.
        url: the port's name or URL for errors (default: the port's own ``port`` attribute).
        timeout: the longest wait for one reply in s (default: the port's read timeout, else
            1 s); :meth:`exchange` may wait less, never more.
    """

    def __init__(self, port: serial.SerialBase, device: str, *, url: str | None = None,
                 timeout: float | None = None) -> None:
        self.port = port
        self.device = device
        self.url = url or str(getattr(port, "port", None) or "serial port")
        self.timeout = timeout if timeout is not None else (getattr(port, "timeout", None) or 1.0)
        self.lock = threading.RLock()

    @classmethod
    def open(cls, settings: SerialSettings, device: str) -> SerialTransport:
        """Open ``settings.url`` (see :func:`open_serial`) and wrap it.

        Raises:
            TransportError: the port or the record file cannot be opened.
        """
        return cls(open_serial(settings, device), device, url=settings.url, timeout=settings.timeout)

    def exchange(self, command: bytes, *, terminator: bytes = b"\n", reply: bool = True,
                 timeout: float | None = None, max_bytes: int = 1024) -> bytes:
        """Send one command frame and read its reply, holding :attr:`lock` throughout.

        Input still waiting from before (a late reply to an earlier command) is discarded
        first, then ``command`` is written as it is, then bytes are read until
        ``terminator``, ``max_bytes`` or the timeout, whichever comes first.

        Args:
            command: the complete frame, framing included (e.g. ``b"\\x1bP\\r\\n"``).
            terminator: the bytes that end a reply (``b"\\n"``, ``b"\\r"``).
            reply: ``False`` for a command the device does not answer: nothing is read.
            timeout: s to wait for the reply, at most :attr:`timeout` (default: that);
                at least :data:`MIN_READ_TIMEOUT`.
            max_bytes: longest reply read before giving up on the terminator.

        Returns:
            The reply as received: ending with ``terminator``, or without it when the device
            stopped mid-line (a truncated frame: the codec decides) or sent ``max_bytes``;
            ``b""`` when ``reply`` is ``False``.

        Raises:
            TransportTimeout: not one byte of a reply within the timeout (the message names
                the port, the command and the wait).
            TransportError: the port failed (the message names the port and the command).
        """
        label = _label(command)
        with self.lock:
            self._io(label, self.port.reset_input_buffer)
            self._io(label, self.port.write, command)
            if not reply:
                return b""
            wait = self._set_timeout(timeout)
            data = self._io(label, self.port.read_until, terminator, max_bytes)
        if not data:
            raise TransportTimeout(self.device, f"no reply to {label} on {self.url} within {wait:g} s",
                                   port=self.url, command=label)
        return data

    def listen(self, *, terminator: bytes = b"\n", timeout: float | None = None,
               max_bytes: int = 1024) -> bytes:
        """Read one line of a device that prints by itself (an auto-print stream): no write.

        Args:
            terminator, max_bytes: as :meth:`exchange`.
            timeout: s to wait for the line, as :meth:`exchange`.

        Returns:
            The line as received (possibly truncated), or ``b""`` when nothing came within the
            timeout: a stream may pause, so that is not an error here.

        Raises:
            TransportError: the port failed.
        """
        with self.lock:
            self._set_timeout(timeout)
            return self._io("the stream", self.port.read_until, terminator, max_bytes)

    def discard_input(self) -> None:
        """Drop input waiting from before (the start of a fresh stream).

        Raises:
            TransportError: the port failed.
        """
        with self.lock:
            self._io("discarding input", self.port.reset_input_buffer)

    def close(self) -> None:
        """Close the port (idempotent)."""
        with self.lock:
            self.port.close()

    def _set_timeout(self, timeout: float | None) -> float:
        wait = self.timeout if timeout is None else max(MIN_READ_TIMEOUT, min(timeout, self.timeout))
        if self.port.timeout != wait:
            self.port.timeout = wait
        return wait

    def _io(self, label: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (serial.SerialException, OSError) as exc:
            raise TransportError(self.device, f"serial I/O failed on {self.url} ({label}): {exc}",
                                 port=self.url, command=label) from exc


def _label(command: bytes) -> str:
    """The command as it reads in an error: its text without framing blanks and control bytes."""
    text = command.decode("latin-1")
    return repr("".join(c for c in text if c.isprintable()).strip() or text)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Read a record file back: a list of ``{"t", "device", "dir", "data": bytes}`` dicts."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            entry["data"] = bytes.fromhex(entry.pop("hex"))
            out.append(entry)
    return out
