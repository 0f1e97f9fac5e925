"""In-process serial attachment for simulated devices: the ``simbench://<name>`` URL scheme.

pyserial's :func:`serial.serial_for_url` looks for a module ``protocol_<scheme>`` with a class
``Serial`` in every package listed in ``serial.protocol_handler_packages``. :func:`install`
adds this package there, so a driver opening ``simbench://balance`` gets a
:class:`~simulators.urlhandler.protocol_simbench.Serial` wired to whatever device was
:func:`register`-ed under ``"balance"`` — the driver code is the same as for a real port.

The registry is process-wide because pyserial instantiates handler classes by URL only.
The composition root (CLI wiring of a simulated bench, test fixtures) calls :func:`install`
and :func:`register`; library code under ``asab/`` never imports this package.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import serial

from asab.clock import Clock

PACKAGE = "simulators.urlhandler"
SCHEME = "simbench"
DEFAULT_STEP = 0.01
"""Clock step in s while a read waits for bytes (≈ 10 characters at 9600 baud; a design choice)."""


@runtime_checkable
class SerialDevice(Protocol):
    """A simulated device on the far end of a serial line.

    ``receive`` gets the bytes the host wrote; ``transmit`` returns (and forgets) the bytes the
    device has sent since the previous call (``b""`` if none).
    """

    def receive(self, data: bytes) -> None: ...

    def transmit(self) -> bytes: ...


@dataclass(frozen=True)
class Attachment:
    """A registered device, the clock the port waits on, and the wait step in s."""

    device: SerialDevice
    clock: Clock
    step: float = DEFAULT_STEP


_lock = threading.Lock()
_registry: dict[str, Attachment] = {}


def install() -> None:
    """Make ``simbench://`` URLs known to :func:`serial.serial_for_url` (idempotent)."""
    with _lock:
        if PACKAGE not in serial.protocol_handler_packages:
            serial.protocol_handler_packages.append(PACKAGE)


def register(
    name: str, device: SerialDevice, clock: Clock, *, step: float = DEFAULT_STEP, replace: bool = False
) -> None:
    """Attach ``device`` under ``simbench://<name>``.

    Args:
        name: device name as used in the URL (case-sensitive, no ``/`` or ``?``).
        device: object with ``receive(bytes)`` and ``transmit() -> bytes``.
        clock: clock a port waits on while reading (a ``VirtualClock`` makes waits instant).
        step: longest single clock sleep in s while waiting for bytes.
        replace: replace an existing registration instead of failing.

    Raises:
        ValueError: bad name or step, or ``name`` already registered and not ``replace``.
    """
    if not name or any(c in name for c in "/?#") or step <= 0:
        raise ValueError(f"invalid simbench registration {name!r} (step {step})")
    with _lock:
        if name in _registry and not replace:
            raise ValueError(f"simbench device {name!r} is already registered")
        _registry[name] = Attachment(device, clock, step)


def unregister(name: str) -> None:
    """Detach the device registered as ``name`` (no error if there is none).

    Ports already open keep talking to the device they were opened with.
    """
    with _lock:
        _registry.pop(name, None)


def lookup(name: str) -> Attachment:
    """Return the attachment registered as ``name``.

    Raises:
        KeyError: nothing is registered under ``name``.
    """
    with _lock:
        try:
            return _registry[name]
        except KeyError:
            raise KeyError(f"no simbench device registered as {name!r}") from None


def registered() -> tuple[str, ...]:
    """Names currently registered (sorted)."""
    with _lock:
        return tuple(sorted(_registry))
