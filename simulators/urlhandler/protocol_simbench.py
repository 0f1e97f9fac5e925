"""pyserial handler for ``simbench://<name>``: a serial port wired to a registered simulator.

Semantics follow pyserial's ``Serial``: ``read(size)`` returns as soon as ``size`` bytes are
there; with ``timeout=None`` it blocks until then, with ``timeout=0`` it returns what is there,
otherwise it waits at most ``timeout`` s. Waiting happens on the registered clock in steps of
at most the registered step, so with a ``VirtualClock`` a timeout costs no wall-clock time.
``inter_byte_timeout``, ``write_timeout`` and flow control are accepted and ignored: writes
reach the device at once and nothing is ever lost on the line.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

from serial.serialutil import PortNotOpenError, SerialBase, SerialException, to_bytes

from simulators.urlhandler import SCHEME, Attachment, lookup

log = logging.getLogger(__name__)

TIME_EPSILON = 1e-9
"""s; a remaining wait this short counts as expired (float steps of a virtual clock can leave
crumbs of ~1e-16 s that a clock may refuse to advance by)."""


def device_name(url: str) -> str:
    """Return ``<name>`` from ``simbench://<name>`` (trailing ``/`` and query ignored).

    Raises:
        SerialException: other scheme or empty name.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != SCHEME:
        raise SerialException(f"expected {SCHEME}://<device-name>, got {url!r}")
    name = (parts.netloc + parts.path).strip("/")
    if not name:
        raise SerialException(f"no device name in {url!r}")
    return name


class Serial(SerialBase):
    """A pyserial port whose far end is a simulated device (see module docstring)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._attachment: Attachment | None = None
        self._rx = bytearray()
        self._rx_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ open / close
    def open(self) -> None:
        """Connect to the device registered under the URL's name.

        Raises:
            SerialException: already open, no URL, or no device registered under the name.
        """
        if self.is_open:
            raise SerialException("port is already open")
        if self._port is None:
            raise SerialException("port must be configured before it can be used")
        name = device_name(self._port)
        try:
            self._attachment = lookup(name)
        except KeyError as exc:
            raise SerialException(str(exc)) from None
        self._reconfigure_port()
        self.is_open = True
        with self._rx_lock:
            self._rx.clear()
        log.debug("opened %s", self._port)

    def close(self) -> None:
        """Close the port (idempotent); the device stays registered."""
        self.is_open = False
        self._attachment = None

    def _reconfigure_port(self) -> None:
        """Settings are not simulated on the wire; only sanity-check the baud rate."""
        if not isinstance(self._baudrate, int) or self._baudrate <= 0:
            raise ValueError(f"invalid baudrate: {self._baudrate!r}")

    # ------------------------------------------------------------------ byte traffic
    def _open_attachment(self) -> Attachment:
        if not self.is_open or self._attachment is None:
            raise PortNotOpenError()
        return self._attachment

    def _pull(self, attachment: Attachment) -> int:
        """Move what the device sent into the input buffer; return the buffer length."""
        data = attachment.device.transmit()
        with self._rx_lock:
            if data:
                self._rx += data
            return len(self._rx)

    def _take(self, size: int) -> bytes:
        with self._rx_lock:
            out = bytes(self._rx[:size])
            del self._rx[:size]
            return out

    def read(self, size: int = 1) -> bytes:
        """Read up to ``size`` bytes, waiting on the device's clock per pyserial timeout rules."""
        attachment = self._open_attachment()
        if size <= 0:
            return b""
        clock = attachment.clock
        deadline = None if self._timeout is None else clock.now() + self._timeout
        while self._pull(attachment) < size and self.is_open:
            if deadline is None:
                clock.sleep(attachment.step)
                continue
            remaining = deadline - clock.now()
            if remaining <= TIME_EPSILON:
                break
            clock.sleep(min(attachment.step, remaining))
        return self._take(size)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Hand ``data`` to the device at once; return the number of bytes written."""
        attachment = self._open_attachment()
        payload = to_bytes(data)
        if payload:
            attachment.device.receive(payload)
        return len(payload)

    @property
    def in_waiting(self) -> int:
        """Bytes the device has sent that were not read yet."""
        return self._pull(self._open_attachment())

    @property
    def out_waiting(self) -> int:
        """Always 0: writes reach the device immediately."""
        self._open_attachment()
        return 0

    def reset_input_buffer(self) -> None:
        """Discard everything the device has sent so far."""
        self._pull(self._open_attachment())
        with self._rx_lock:
            self._rx.clear()

    def reset_output_buffer(self) -> None:
        """Nothing to discard: writes are never buffered."""
        self._open_attachment()

    def cancel_read(self) -> None:
        """Not supported across threads; a no-op kept for pyserial API compatibility."""

    def cancel_write(self) -> None:
        """Writes never block; a no-op kept for pyserial API compatibility."""

    # ------------------------------------------------------------------ modem lines (fixed)
    def _update_break_state(self) -> None:
        """Break is not simulated."""

    def _update_rts_state(self) -> None:
        """RTS is not simulated."""

    def _update_dtr_state(self) -> None:
        """DTR is not simulated."""

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True
