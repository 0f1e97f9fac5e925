"""Sartorius Entris II balance over RS-232, Sartorius Balance Interface (SBI).

Protocol (``shared/docs/device_protocols.md``, Sartorius section):

* commands are ``ESC <cmd> CR LF``: ``P`` print one value, ``T`` zero+tare, ``U`` tare only,
  ``V`` zero, ``x1_`` model, ``x2_`` serial number;
* a value line is 16 characters: sign (``+``, ``-`` or space), space, 8-character value with
  decimal point, space, 3-character unit, CR, LF; with the ID code enabled a 6-character ID
  (``N     ``, ``G     ``) comes first (22 characters). A blank unit field means *not stable*;
* lines starting with ``Stat`` report a status (overload, underload, error) and never carry a
  number.

The module has two halves: pure functions (:func:`encode_command`, :func:`parse_line`,
:func:`to_grams`) that know the frames, and :class:`SartoriusEntrisII`, which exchanges them
through a :class:`~asab.drivers.transport.SerialTransport` and waits on an injected
:class:`~asab.clock.Clock` (:func:`~asab.clock.poll_until`).
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import pint
import serial

from asab.clock import Clock, poll_until
from asab.config.models import BalanceSettings
from asab.drivers.base import BalanceReading
from asab.drivers.transport import SerialTransport
from asab.errors import Cause, DeviceError, DeviceFault, TransportError, TransportTimeout, WaitTimeout
from asab.units import ureg

log = logging.getLogger(__name__)

ESC = b"\x1b"
CRLF = b"\r\n"
LINE_LENGTH = 16
"""Value line incl. CR LF (device_protocols.md)."""
ID_LENGTH = 6
"""ID-code prefix width, e.g. ``"N     "`` (device_protocols.md)."""
MAX_LINE = 64
"""Longest line read before giving up on finding LF (well above the 22-character form)."""
POLL_INTERVAL = 0.1
"""s between print requests while waiting for a stable value (design choice, ~1 display cycle)."""

_STATUS_CAUSES = {"HIGH": Cause.OVERLOAD, "LOW": Cause.UNDERLOAD, "APP.ERR": Cause.APPLICATION_ERROR}
_ERR_RE = re.compile(r"ERR\s*(\d+)", re.IGNORECASE)
_VALUE_RE = re.compile(r" *-?(\d+\.?\d*|\.\d+)")
_SBI_UNITS = {
    "g": "gram",
    "mg": "milligram",
    "kg": "kilogram",
    "ct": "carat",
    "lb": "pound",
    "oz": "ounce",
    "ozt": "troy_ounce",
    "GN": "grain",
    "dwt": "pennyweight",
}
"""Unit field as printed → pint unit. Codes g/mg/kg/ct from device_protocols.md; lb, oz, ozt,
GN (grain) and dwt are the Sartorius menu abbreviations. Spelled out so that e.g. ``GN`` is
never read by pint as giganewton. Anything else (``pcs``, ``%``…) is not a mass."""


@lru_cache(maxsize=1)
def _warn_unchecked() -> None:
    """Say once per process that this driver has not met a real Entris II yet."""
    log.warning("asab.drivers.sartorius has not yet been checked on a real Entris II balance")


class FrameError(TransportError):
    """A line that is not a valid SBI frame (garbled, truncated, wrong width)."""


# ---------------------------------------------------------------------------------- pure codec
def encode_command(cmd: str) -> bytes:
    """Frame an SBI command: ``ESC <cmd> CR LF``.

    Args:
        cmd: command letters without framing, e.g. ``"P"``, ``"T"``, ``"x1_"``.

    Returns:
        The bytes to write, e.g. ``b"\\x1bP\\r\\n"``.

    Raises:
        ValueError: empty command or characters outside printable ASCII.
    """
    if not cmd or not all(" " < c <= "~" for c in cmd):
        raise ValueError(f"invalid SBI command {cmd!r}")
    return ESC + cmd.encode("ascii") + CRLF


@lru_cache(maxsize=32)
def _grams_per(unit: str) -> float | None:
    name = _SBI_UNITS.get(unit)
    if name is None:
        return None
    try:
        return float(ureg.Quantity(1.0, name).to("g").magnitude)
    except pint.errors.PintError:  # pragma: no cover - table is fixed
        return None


def to_grams(value: float, unit: str, device: str = "balance") -> float:
    """Convert ``value`` printed in SBI unit ``unit`` (e.g. ``"mg"``) to g (factors from pint).

    Raises:
        DeviceError: cause :attr:`~Cause.UNKNOWN_UNIT` when ``unit`` is not a mass unit.
    """
    factor = _grams_per(unit)
    if factor is None:
        raise DeviceError(device, Cause.UNKNOWN_UNIT, f"unknown unit {unit!r}")
    return value * factor


def _text(line: bytes | str, device: str) -> str:
    if isinstance(line, bytes):
        try:
            return line.decode("ascii")
        except UnicodeDecodeError:
            raise FrameError(device, f"non-ASCII bytes in line {line!r}") from None
    return line


def _raise_status(body: str, device: str) -> None:
    """Raise :class:`DeviceFault` for a ``Stat`` line body (text after ``Stat``)."""
    text = " ".join(body.split())
    if _ERR_RE.fullmatch(text):
        cause = Cause.BALANCE_ERROR
    else:
        cause = _STATUS_CAUSES.get(text.upper(), Cause.BALANCE_STATUS)
    detail = text if cause in (Cause.BALANCE_ERROR, Cause.BALANCE_STATUS) and text else None
    raise DeviceFault(device, cause, f"balance reports status {text!r} ({cause})", detail=detail)


def parse_line(
    line: bytes | str, *, device: str = "balance", unit_hint: str | None = None
) -> BalanceReading:
    """Decode one SBI output line into a reading in g.

    Args:
        line: 16- or 22-character line as received (the trailing CR LF may be left off).
        device: device name put into raised errors.
        unit_hint: unit code to use when the unit field is blank (unstable value); the driver
            passes the unit of the last stable line.

    Returns:
        ``BalanceReading(value=<g>, unit=<unit as printed or unit_hint>, stable, raw)``.

    Raises:
        DeviceFault: a ``Stat`` line; cause :attr:`~Cause.OVERLOAD` (``High``),
            :attr:`~Cause.UNDERLOAD` (``Low``), :attr:`~Cause.APPLICATION_ERROR`
            (``APP.ERR``), :attr:`~Cause.BALANCE_ERROR` (``ERR ###``, ``detail`` e.g.
            ``"ERR 101"``) or :attr:`~Cause.BALANCE_STATUS` (any other text, in ``detail``).
        DeviceError: cause :attr:`~Cause.UNKNOWN_UNIT`: unit not a mass unit, or blank
            without a hint.
        FrameError: anything that is not a well-formed line of either width.
    """
    text = _text(line, device)
    body = text[:-2] if text.endswith("\r\n") else text
    for prefix in (0, ID_LENGTH):
        if body[prefix : prefix + 4] == "Stat":
            _raise_status(body[prefix + 4 :], device)
    if len(body) == LINE_LENGTH - 2 + ID_LENGTH:
        body = body[ID_LENGTH:]
    if len(body) != LINE_LENGTH - 2 or body[1] != " " or body[10] != " ":
        raise FrameError(device, f"malformed balance line {text!r}")
    sign, field, unit = body[0], body[2:10], body[11:14].strip()
    if sign not in "+- " or not _VALUE_RE.fullmatch(field) or field.count("-") > (sign == " "):
        raise FrameError(device, f"malformed balance value in {text!r}")
    value = float(field.replace(" ", "")) * (-1.0 if sign == "-" else 1.0)
    stable = bool(unit)
    unit = unit or (unit_hint or "")
    if not unit:
        raise DeviceError(device, Cause.UNKNOWN_UNIT, f"unstable value without a known unit: {text!r}")
    return BalanceReading(value=to_grams(value, unit, device), unit=unit, stable=stable, raw=text)


# ---------------------------------------------------------------------------------- driver
class SartoriusEntrisII:
    """Driver for a Sartorius Entris II balance; implements :class:`asab.drivers.base.Balance`.

    Args:
        settings: balance settings; ``settings.serial`` gives URL and line settings
            (real port, ``socket://`` or ``simbench://``), ``settings.stable_timeout`` the
            default wait for a stable value in s.
        clock: clock every wait goes through.
        port: an already opened pyserial port to use instead of opening ``settings.serial.url``.

    Raises:
        TransportError: the port cannot be opened.
    """

    def __init__(self, settings: BalanceSettings, clock: Clock, port: serial.SerialBase | None = None):
        self.name = settings.name
        self.settings = settings
        self._clock = clock
        self._unit: str | None = None
        s = settings.serial
        self._io = (SerialTransport.open(s, self.name) if port is None
                    else SerialTransport(port, self.name, url=s.url, timeout=s.timeout))
        _warn_unchecked()

    # ---------------------------------------------------------------- byte level
    def _ask(self, cmd: str, timeout: float | None = None) -> bytes:
        """``ESC <cmd> CR LF``, then the answer line (see :meth:`SerialTransport.exchange`)."""
        return self._io.exchange(encode_command(cmd), terminator=b"\n", timeout=timeout,
                                 max_bytes=MAX_LINE)

    def _decode(self, line: bytes) -> BalanceReading | None:
        """Parse a complete line; ``None`` if unstable and no unit is known yet.

        Raises:
            FrameError: truncated (no CR LF) or malformed line.
            DeviceFault, DeviceError: as :func:`parse_line`.
        """
        if not line.endswith(CRLF):
            raise FrameError(self.name, f"truncated balance line {line!r}")
        try:
            reading = parse_line(line, device=self.name, unit_hint=self._unit)
        except DeviceError as exc:
            if exc.cause is Cause.UNKNOWN_UNIT and self._unit is None and _blank_unit(line):
                return None
            raise
        if reading.stable:
            self._unit = reading.unit
        return reading

    # ---------------------------------------------------------------- Balance protocol
    def read(self, stable: bool = True, timeout: float | None = None) -> BalanceReading:
        """Request values with ``ESC P`` until one is usable, polling every 0.1 s.

        Needs the balance's print mode set to "on request" (menu: print, manual / without
        stability): with auto-print enabled each ``ESC P`` toggles the stream instead of
        printing one value — use :meth:`read_stream` on such a balance.

        Args:
            stable: wait for a stable value (non-blank unit field).
            timeout: s to keep trying; default ``settings.stable_timeout``.

        Returns:
            The reading, ``value`` in g. An unstable value is only returned once the unit is
            known from an earlier stable line (units are never assumed).

        Raises:
            DeviceFault: the balance answers with a ``Stat`` line (overload, underload, error).
            DeviceError: cause :attr:`~Cause.UNKNOWN_UNIT`.
            TransportTimeout: no (stable) value within ``timeout``.
            TransportError: only garbled or truncated lines within ``timeout``.
        """
        timeout = self.settings.stable_timeout if timeout is None else timeout
        deadline = self._clock.now() + timeout
        frame_error: FrameError | None = None  # reported if nothing readable ever came
        problem: TransportError | None = None
        answered = False

        def usable() -> BalanceReading | None:
            nonlocal frame_error, problem, answered
            reading, problem = self._attempt(deadline)
            if reading is not None and (reading.stable or not stable):
                return reading
            answered |= reading is not None
            if isinstance(problem, FrameError):
                frame_error = problem
            return None

        with self._io.lock:
            try:
                return poll_until(self._clock, usable, timeout, "a stable value" if stable
                                  else "a value", POLL_INTERVAL, device=self.name)
            except WaitTimeout:
                if answered:
                    raise TransportTimeout(self.name, f"no stable value within {timeout} s") from None
                raise frame_error or problem or TransportTimeout(
                    self.name, f"no stable value within {timeout} s") from None

    def _attempt(self, deadline: float) -> tuple[BalanceReading | None, TransportError | None]:
        """Ask once; return ``(reading or None, transport problem or None)``."""
        try:
            line = self._ask("P", max(0.0, deadline - self._clock.now()))
        except TransportTimeout as exc:
            return None, exc
        try:
            reading = self._decode(line)
        except FrameError as exc:
            log.warning("%s: %s", self.name, exc)
            return None, exc
        return reading, None

    def tare(self) -> None:
        """Send ``ESC T`` (zero+tare, like the front-panel key).

        Chosen over ``ESC U`` (tare only) because it always leaves the display at 0: within
        the zero range the balance zeroes, beyond it tares. No answer is expected; read a
        stable value afterwards before relying on it.

        Raises:
            TransportError: the write failed.
        """
        self._io.exchange(encode_command("T"), reply=False)

    def zero(self) -> None:
        """Send ``ESC V`` (zero; the balance ignores it outside its zero range).

        Raises:
            TransportError: the write failed.
        """
        self._io.exchange(encode_command("V"), reply=False)

    def read_stream(self, n: int, timeout: float) -> list[BalanceReading]:
        """Collect ``n`` lines from the auto-print stream (no request is sent).

        Input waiting from before the call is discarded first; garbled lines and unstable
        lines whose unit is not known yet are skipped.

        Args:
            n: number of readings wanted (≥ 1).
            timeout: s allowed for all ``n``.

        Returns:
            ``n`` readings in arrival order, values in g, stable or not.

        Raises:
            ValueError: ``n < 1``.
            DeviceFault: a ``Stat`` line arrives.
            TransportTimeout: fewer than ``n`` readings within ``timeout``.
        """
        if n < 1:
            raise ValueError("n must be >= 1")
        deadline = self._clock.now() + timeout
        out: list[BalanceReading] = []

        def collected() -> bool:
            line = self._io.listen(terminator=b"\n", max_bytes=MAX_LINE,
                                   timeout=max(0.0, deadline - self._clock.now()))
            try:
                reading = self._decode(line) if line else None
            except FrameError as exc:
                log.debug("%s: skipping %s", self.name, exc)
                return False
            if reading is not None:
                out.append(reading)
            return len(out) >= n

        with self._io.lock:
            self._io.discard_input()
            try:  # interval 0: each look blocks on the line itself
                poll_until(self._clock, collected, timeout, f"{n} stream lines", 0.0, device=self.name)
            except WaitTimeout:
                raise TransportTimeout(self.name, f"{len(out)} of {n} stream lines in {timeout} s") from None
        return out

    def model(self) -> str:
        """Ask ``ESC x1_`` and return the model designation, e.g. ``"BCE224I-1S"``.

        Raises:
            TransportTimeout: no answer within the serial timeout.
        """
        return self._query("x1_")

    def serial_number(self) -> str:
        """Ask ``ESC x2_`` and return the serial number as printed.

        Raises:
            TransportTimeout: no answer within the serial timeout.
        """
        return self._query("x2_")

    def _query(self, cmd: str) -> str:
        line = self._ask(cmd)
        if not line.endswith(CRLF):
            raise TransportTimeout(self.name, f"no complete answer to {cmd!r}: {line!r}")
        return line.decode("ascii", errors="replace").strip()

    def close(self) -> None:
        """Close the serial port (idempotent)."""
        self._io.close()


def _blank_unit(line: bytes) -> bool:
    """True if ``line`` is a value line whose unit field (characters 12–14) is blank."""
    body = line[:-2]
    return len(body) in (LINE_LENGTH - 2, LINE_LENGTH - 2 + ID_LENGTH) and not body[-3:].strip()
