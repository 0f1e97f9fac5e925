"""Anton Paar DMA 4100 M + Lovis 2000 ME over the RS-232 remote control.

Frames and reply parsing are in :mod:`asab.drivers.antonpaar_rs232_codec`; this module
exchanges them through a :class:`~asab.drivers.transport.SerialTransport` and waits on the
injected :class:`~asab.clock.Clock` (:func:`~asab.clock.poll_until`).

How a measurement maps onto the protocol (:meth:`DMA4100Rs232Driver.measure`):

1. ``set temperature <set point>`` → ``accepted`` (only possible while idle);
2. ``getdatahead`` and ``getdataunit`` → the column layout and the units (never assumed);
3. one cycle per repetition: ``start [method_no]``; while the reply is ``heating`` the cell is
   still approaching the set point and ``start`` is sent again every ``poll_interval`` s (a
   ``heating`` reply means nothing started, so this is not a blind retry) until the
   measurement's deadline; then ``finished`` is polled until ``Measurement finished``; then
   ``getdata`` once → one :class:`~asab.drivers.base.RepetitionResult`;
4. every repetition's reported Density Temperature must be within
   ``settings.temperature_tolerance`` of the set point — that is the confirmation that the set
   point took effect; a repetition outside it is marked invalid (both values) and its
   conditions say why.

Retries: only idempotent commands — ``finished``, ``getid``, ``getdatahead``, ``getdataunit``
and ``set temperature`` (setting the same value twice is harmless) — are repeated, at most
:data:`SAFE_TRIES` times, on no reply, a truncated reply or an unrecognised (garbled) reply.
``start`` is never repeated blindly: when its reply is lost or garbled the driver asks
``finished``; ``Measurement not finished`` means it did start, anything else means it did not
and ``start`` is sent again (bounded by :data:`SAFE_TRIES`).

``getdata`` is consumed once, so it is never retried blindly. If its reply is *lost* (nothing
within the serial timeout) the driver sends one probe ``getdata``: the data come back if the
command never reached the instrument; ``no new data available`` means the reply was lost on the
way back. If the reply is truncated or garbled it was certainly consumed. In both lost cases,
and when the instrument answers ``no new data available`` right after a finished measurement,
the repetition is measured again (the liquid is still in the cell) — at most
:data:`MAX_REMEASURE` extra cycles per call, then :class:`~asab.errors.DeviceFault`.

Not yet checked on real hardware: the reply texts are those of ``device_protocols.md``; the
column names follow the LIMS export (``Lovis Dyn. Viscosity``, ``Lovis Condition``, ...).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable

import serial

from asab.clock import Clock, poll_until
from asab.config.models import DensimeterSettings
from asab.drivers import antonpaar_rs232_codec as codec
from asab.drivers.antonpaar_rs232_codec import Layout, Reply, ReplyError
from asab.drivers.base import DensityViscosityResult, RepetitionResult, confirm_temperature
from asab.drivers.transport import SerialTransport
from asab.errors import (
    Cause,
    ConfigError,
    DeviceBusy,
    DeviceFault,
    RequestError,
    TransportError,
    TransportTimeout,
    WaitTimeout,
)
from asab.retry import retrying

log = logging.getLogger(__name__)

SAFE_TRIES = 3
"""Attempts for an idempotent command (design choice: survives two lost/garbled replies)."""
MAX_REMEASURE = 2
"""Extra start/finished/getdata cycles per measurement after lost data (design choice)."""
MAX_LINE = 1024
"""Longest reply read before giving up on CR (a data line of ~12 columns is < 200 bytes)."""
SAMPLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
"""Sample names become the name of the raw transcript file."""


@functools.cache
def _warn_unverified() -> None:
    log.warning("asab.drivers.antonpaar_rs232 has not yet been checked on real hardware "
                "(DMA 4100 M / Lovis 2000 ME over RS-232)")


class DMA4100Rs232Driver:
    """:class:`~asab.drivers.base.DensityViscosityMeter` of a DMA 4100 M + Lovis 2000 ME (RS-232).

    Args:
        settings: ``serial`` (URL and line settings), ``method``/``method_number``, set point
            ``temperature`` (K) and ``temperature_tolerance`` (K), ``repetitions``,
            ``result_timeout`` (s); ``name`` becomes :attr:`name`.
        clock: every wait goes through it.
        port: an open pyserial port to use instead of opening ``settings.serial``.
        poll_interval: s between ``finished`` polls and between ``start`` attempts while heating.

    Raises:
        ConfigError: no ``serial`` settings. TransportError: the port cannot be opened.
    """

    def __init__(self, settings: DensimeterSettings, clock: Clock,
                 port: serial.SerialBase | None = None, poll_interval: float = 1.0) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        if settings.serial is None and port is None:
            raise ConfigError(f"{settings.name}: the RS-232 driver needs serial settings (densimeter.serial)")
        self.settings = settings
        self.name = settings.name
        self.clock = clock
        self.poll_interval = poll_interval
        if port is None:
            self._io = SerialTransport.open(settings.serial, self.name)
        else:
            serial_settings = settings.serial
            self._io = SerialTransport(port, self.name, url=serial_settings and serial_settings.url,
                                       timeout=serial_settings.timeout if serial_settings else 1.0)
        _warn_unverified()

    def close(self) -> None:
        """Close the serial port (idempotent)."""
        self._io.close()

    # ------------------------------------------------------------------ public commands
    def identify(self) -> str:
        """``getid``: serial number / model and firmware / protocol version, as reported."""
        return self._query("getid", lambda r: bool(r.strip()))

    def status(self) -> Reply:
        """``finished``: one of :data:`~codec.FINISHED_STATES`."""
        return Reply(codec.normalise(
            self._query("finished", lambda r: codec.normalise(r) in codec.FINISHED_STATES)))

    def set_temperature(self, kelvin: float) -> None:
        """``set temperature <°C>`` and require ``accepted``.

        Raises:
            DeviceError: ``wrong parameter value`` (out of range). DeviceBusy: a measurement runs.
        """
        self._query(codec.encode_set_temperature(kelvin).decode().strip(),
                    lambda r: codec.normalise(r) == codec.ACCEPTED)
        log.info("%s: set point %.3f K accepted", self.name, kelvin)

    def abort(self) -> None:
        """``abort`` (best effort: never raises; the reply is not documented and not checked)."""
        try:
            self._ask(codec.encode_command("abort"))
        except Exception as exc:  # noqa: BLE001 - called while another error propagates
            log.warning("%s: abort got no clean reply: %s", self.name, exc)

    def measure(self, sample: str, timeout: float | None = None) -> DensityViscosityResult:
        """Set the temperature, then measure ``settings.repetitions`` repetitions (module docstring).

        Args:
            sample: sample name (letters, digits, ``_``, ``-``): names the raw transcript.
            timeout: s for the whole measurement incl. heating (default ``settings.result_timeout``).

        Returns:
            Per-repetition values in g/cm³, K and mPa·s; ``raw_file`` is the transcript's file
            name ``<sample>_<method>_rs232.csv`` (no file exists on the instrument) and
            ``raw_text`` the head, unit and data lines as received, CR LF terminated.

        Raises:
            RequestError: invalid sample name.
            DeviceBusy: cause ``"heating"`` (set point not reached before the deadline) or
                ``"measurement already started"``.
            DeviceError: cause ``"invalid method"``, ``"wrong parameter value"``,
                ``"unknown unit"``, ``"unexpected data layout"``.
            DeviceFault: cause ``"no new data available"`` or ``"data lost"`` after
                :data:`MAX_REMEASURE` extra cycles; ``"measurement not started"``.
            TransportTimeout: no reply (after the retries), or not finished before the deadline
                (the measurement is aborted first).
            ReplyError: only truncated or garbled replies to an idempotent command.
        """
        if not SAMPLE_NAME.fullmatch(sample):
            raise RequestError(f"{self.name}: sample name {sample!r} must be 1-100 letters, digits, '_' or '-'")
        limit = self.settings.result_timeout if timeout is None else timeout
        deadline = self.clock.now() + limit
        with self._io.lock:
            self.set_temperature(self.settings.temperature)
            head = self._query("getdatahead", lambda r: codec.DENSITY in codec.columns(r))
            units = self._query("getdataunit", lambda r: len(codec.columns(r)) == len(codec.columns(head)))
            layout = codec.parse_layout(head, units, self.name)
            lines = self._repetitions(layout, deadline, limit)
        reps = [self._confirm_temperature(codec.parse_data(ln, layout, i + 1)) for i, ln in enumerate(lines)]
        log.info("%s: %s measured (%d repetitions)", self.name, sample, len(reps))
        return DensityViscosityResult(
            sample=sample, method=self.settings.method, repetitions=reps,
            raw_file=f"{sample}_{self.settings.method}_rs232.csv",
            raw_text="".join(f"{ln}\r\n" for ln in (head, units, *lines)),
        )

    # ------------------------------------------------------------------ repetitions
    def _repetitions(self, layout: Layout, deadline: float, limit: float) -> list[str]:
        """Run start/finished/getdata cycles until ``settings.repetitions`` data lines are in."""
        lines: list[str] = []
        lost: list[str] = []
        while len(lines) < self.settings.repetitions:
            self._start(deadline, limit)
            try:
                self._wait_finished(deadline, limit)
            except BaseException:
                self.abort()
                raise
            line, why = self._fetch(layout)
            if why is None:
                lines.append(line)
                continue
            lost.append(why)
            log.warning("%s: repetition %d lost (%s); measuring it again", self.name, len(lines) + 1, why)
            if len(lost) > MAX_REMEASURE:
                raise DeviceFault(self.name, why, f"{why} after {len(lost)} measurements "
                                  f"({len(lines)} of {self.settings.repetitions} repetitions read)")
        return lines

    def _start(self, deadline: float, limit: float) -> None:
        """``start``; wait out ``heating``; a lost reply is resolved with ``finished``.

        Polled every ``poll_interval`` s until the deadline: ``heating`` and an unclear reply
        (after ``finished`` said nothing runs; at most :data:`SAFE_TRIES`) try again.
        """
        frame, unclear, heating = codec.encode_start(self.settings.method_number), 0, False

        def started() -> bool:
            nonlocal unclear, heating
            try:
                reply = self._ask(frame)
            except TransportError as exc:
                reply = f"<{exc}>"
            status = codec.normalise(reply)
            heating = status == Reply.HEATING
            if status in (Reply.STARTED, Reply.HEATING):
                return status == Reply.STARTED
            codec.raise_for_reply(self.name, "start", reply)
            unclear += 1
            log.warning("%s: unclear reply %r to start; asking 'finished'", self.name, reply)
            if self.status() == Reply.NOT_FINISHED:
                return True
            if unclear >= SAFE_TRIES:
                raise ReplyError(self.name, Cause.GARBLED_REPLY, f"no clear reply to start in {unclear} tries")
            return False

        try:
            poll_until(self.clock, started, max(0.0, deadline - self.clock.now()),
                       "the measurement to start", self.poll_interval, device=self.name)
        except WaitTimeout as exc:
            if not heating:
                raise ReplyError(self.name, Cause.GARBLED_REPLY,
                                 f"no clear reply to start within {limit:g} s") from exc
            raise DeviceBusy(self.name, Cause.HEATING, "the cell did not reach the set point "
                             f"{self.settings.temperature:.3f} K within {limit:g} s") from exc

    def _wait_finished(self, deadline: float, limit: float) -> None:
        def finished() -> bool:
            state = self.status()
            if state == Reply.NOT_STARTED:
                raise DeviceFault(self.name, Cause.NOT_STARTED,
                                  "the instrument reports no measurement although start was accepted")
            return state == Reply.FINISHED

        try:
            poll_until(self.clock, finished, max(0.0, deadline - self.clock.now()),
                       "the end of the measurement", self.poll_interval, device=self.name)
        except WaitTimeout as exc:
            raise TransportTimeout(self.name, f"measurement not finished within {limit:g} s (aborted)") from exc

    def _fetch(self, layout: Layout) -> tuple[str, None] | tuple[None, Cause]:
        """``getdata`` once (plus one probe if the reply is lost); ``(line, None)`` or ``(None, why)``.

        A probe answered ``no new data available`` means the first reply was lost on the way
        back: the cause is :attr:`~Cause.DATA_LOST`, not the instrument having nothing.
        """
        getdata = codec.encode_command("getdata")
        try:
            reply = self._ask(getdata)
        except TransportTimeout:
            log.warning("%s: no reply to getdata; probing once", self.name)
            try:
                reply = self._ask(getdata)
            except TransportError:
                return None, Cause.DATA_LOST
            if codec.normalise(reply) == Reply.NO_NEW_DATA:
                return None, Cause.DATA_LOST
        except ReplyError as exc:
            log.warning("%s: getdata reply unusable (%s)", self.name, exc)
            return None, Cause.DATA_LOST
        if codec.normalise(reply) == Reply.NO_NEW_DATA:
            return None, Cause.NO_NEW_DATA
        try:
            codec.parse_data(reply, layout, 1)
        except ValueError as exc:
            log.warning("%s: garbled getdata reply: %s", self.name, exc)
            return None, Cause.DATA_LOST
        return reply, None

    def _confirm_temperature(self, rep: RepetitionResult) -> RepetitionResult:
        """Invalidate a repetition whose cell temperature is off the set point."""
        return confirm_temperature(rep, self.settings.temperature,
                                   self.settings.temperature_tolerance, self.name)

    # ------------------------------------------------------------------ byte level
    def _ask(self, frame: bytes) -> str:
        """One command, one CR-terminated reply as text (:meth:`SerialTransport.exchange`).

        Raises:
            TransportTimeout: nothing within the serial timeout. ReplyError: no CR (truncated).
            TransportError: the port failed.
        """
        return codec.decode_reply(self._io.exchange(frame, terminator=codec.LINE_END, max_bytes=MAX_LINE),
                                  self.name)

    def _query(self, command: str, ok: Callable[[str], bool]) -> str:
        """An idempotent command, up to :data:`SAFE_TRIES` times until ``ok(reply)``.

        No reply, a truncated or an unexpected reply is tried again at once; refusals
        (``heating``, ``invalid method``...) raise at once (:func:`codec.raise_for_reply`).
        """
        frame = codec.encode_command(command)

        def once() -> str:
            reply = self._ask(frame)
            if ok(reply):
                return reply
            codec.raise_for_reply(self.name, command, reply)
            raise ReplyError(self.name, Cause.GARBLED_REPLY, f"unexpected reply {reply!r} to {command!r}")

        policy = retrying(SAFE_TRIES, lambda exc: isinstance(exc, TransportError), sleep=self.clock.sleep)
        with self._io.lock:
            try:
                return policy(once)
            except TransportTimeout as exc:
                raise TransportTimeout(self.name, f"{exc} ({SAFE_TRIES} tries)", port=exc.port,
                                       command=exc.command) from exc
