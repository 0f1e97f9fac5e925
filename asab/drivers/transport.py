"""Serial transport for every serial driver: pyserial ``serial_for_url`` plus optional recording.

A configuration points a driver at a real port (``/dev/ttyUSB0``, ``COM3``), at
``socket://127.0.0.1:PORT`` (``asab simulate``) or at any other pyserial URL handler; the driver
code is the same for all of them. With ``SerialSettings.record`` set, every exchange is also
appended to a JSON-lines file — the way to capture golden traffic on a real bench.

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
from asab.errors import TransportError


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


def read_records(path: Path) -> list[dict[str, Any]]:
    """Read a record file back: a list of ``{"t", "device", "dir", "data": bytes}`` dicts."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            entry["data"] = bytes.fromhex(entry.pop("hex"))
            out.append(entry)
    return out
