"""Simulated DMA 4100 M + Lovis 2000 ME behind its RS-232 remote control (attach with ``simbench://``).

The simulator parses the host's lines with its own code (never the driver's codec) and answers
in the formats of ``shared/docs/device_protocols.md``: one line per command, CR line end, ``;``
between columns, code page 850. Physics and thermostat are the shared instrument core
(:class:`simulators.antonpaar_core.DMA4100Core`); this module keeps the protocol state:

* ``start [n]`` runs ONE repetition of method ``n`` (a plain ``start``: the default method of the
  data file) taking ``duration / repetitions`` s, measuring the cell content and the cell
  temperature at the start. Refused with ``heating`` while the cell is more than
  ``settled_band`` K from the set point, ``measurement already started`` while one runs,
  ``invalid method`` for an unknown number;
* ``finished`` → ``Measurement not started`` (nothing since power-on or ``abort``) |
  ``Measurement not finished`` | ``Measurement finished``;
* ``getdatahead`` / ``getdataunit`` / ``getdata``: columns :data:`COLUMNS`, units :data:`UNITS`;
  the data of a finished measurement are returned once, then ``no new data available``;
* ``set temperature <°C>`` → ``accepted`` (moves the thermostat's set point) or
  ``wrong parameter value`` (unparsable or outside the thermostat's range); while measuring
  it is answered ``measurement already started``;
* ``getid`` → ``<serial number>;<model> <firmware>;<protocol>``.

Simulator conventions (not documented vendor behaviour): ``abort`` answers
``measurement aborted`` (or ``Measurement not started`` when idle); an unknown command answers
``invalid command``; replies leave ``response_delay`` s after the command.

Fault injection (same shape on every simulator): ``inject(kind, **params)``, ``clear_faults()``;
see :meth:`DMA4100SerialSimulator.inject` for the kinds.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from asab.config.models import Chemical
from simulators import physics
from simulators.antonpaar_core import (
    KELVIN,
    DMA4100Core,
    DMA4100Params,
    FwBwFault,
    ListenerClock,
    MethodSpec,
    Reading,
)
from simulators.liquid import Liquid

log = logging.getLogger(__name__)

CR = b"\r"
CODEPAGE = "cp850"
COLUMNS = ("Density", "Density Temperature", "Density Condition", "Lovis Dyn. Viscosity",
           "Lovis Temperature", "Lovis Condition", "Lovis Time FW", "Lovis Time BW")
"""``getdatahead`` columns (names as in the LIMS export, without ``Results::``)."""
UNITS = ("g/cm³", "°C", "-", "mPa·s", "°C", "-", "s", "s")
"""``getdataunit``, one per column (``-`` for text columns)."""
MAX_INBOX = 512
"""Bytes buffered without a line end before they are dropped (longest command ~25 bytes)."""

LINE_FAULTS = ("no_reply", "garbled", "truncated")
START_FAULTS = {"busy": "measurement already started", "heating": "heating",
                "invalid_method": "invalid method"}
SERIAL_FAULTS = (*LINE_FAULTS, *START_FAULTS, "fw_bw", "no_new_data")
"""Fault kinds the RS-232 front end accepts in :meth:`DMA4100SerialSimulator.inject`."""

_START = re.compile(r"start(?:\s+(\d+))?")
_SET_T = re.compile(r"set\s+temperature\s+(\S+)")


@dataclass
class _Fault:
    count: int | None = None
    commands: frozenset[str] | None = None
    deviation: float = 0.01

    def applies(self, command: str) -> bool:
        return self.commands is None or command in self.commands


@dataclass
class _Run:
    method: MethodSpec
    until: float
    reading: Reading


def _fmt(value: float | None, decimals: int) -> str:
    return "---" if value is None else f"{value:.{decimals}f}"


def _garble(payload: bytes) -> bytes:
    """Line noise: the high bit of every third byte flipped (the CR survives)."""
    return bytes(b ^ 0x80 if i % 3 == 1 else b for i, b in enumerate(payload))


class DMA4100SerialSimulator:
    """Byte-level RS-232 DMA 4100 M + Lovis 2000 ME: ``receive`` host bytes, ``transmit`` replies.

    Args:
        cell: returns what is in the measuring cell now (snapshotted at ``start``).
        chemicals: InChIKey → chemical data for the physics.
        clock: simulated clock with listeners (measurements complete on its ticks).
        params: instrument parameters (default :func:`simulators.antonpaar_core.load_params`).
        seed: noise seed. model: physics parameters.
        core: an instrument core to share with the LIMS front end (then ``cell``,
            ``chemicals``, ``params``, ``seed`` and ``model`` come from it).
    """

    def __init__(
        self, cell: Callable[[], Liquid], chemicals: Mapping[str, Chemical], clock: ListenerClock,
        params: DMA4100Params | None = None, seed: int = 0, model: physics.ElectrolyteModel | None = None,
        core: DMA4100Core | None = None,
    ) -> None:
        self.core = core or DMA4100Core(cell, chemicals, clock, params, seed, model)
        self.clock = clock
        self.params = self.core.params
        if self.params.serial is None:
            raise ValueError("instrument parameters lack the [rs232] table")
        self.ident = self.params.serial
        self.faults: dict[str, _Fault] = {}
        self._lock = threading.RLock()
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._pending: list[tuple[float, bytes]] = []
        self._run: _Run | None = None
        self._data: Reading | None = None
        self._started_once = False
        self._handlers: dict[str, Callable[[re.Match[str] | None], str]] = {
            "finished": self._finished, "getdatahead": lambda m: ";".join(COLUMNS),
            "getdataunit": lambda m: ";".join(UNITS), "getdata": self._getdata,
            "abort": self._abort, "getid": self._getid,
        }
        clock.add_listener(self.tick)

    def close(self) -> None:
        """Unregister from the clock (the core too)."""
        self.clock.remove_listener(self.tick)
        self.core.close()

    # ------------------------------------------------------------------ faults
    def inject(self, kind: str, **params: Any) -> None:
        """Inject a fault until :meth:`clear_faults` or until ``count`` replies/repetitions used it.

        Kinds (every kind takes ``count: int | None = None``, None = until cleared):
            ``no_reply``, ``garbled``, ``truncated`` (also ``commands``: iterable of command
            words such as ``"getdata"``, ``"start"``, ``"finished"``; default every command):
            the reply is dropped / has the high bit of every third byte flipped / is cut in half
            without its CR. The command itself still takes effect (``getdata`` consumes data).
            ``busy``, ``heating``, ``invalid_method``: ``start`` is answered
            ``measurement already started`` / ``heating`` / ``invalid method``.
            ``no_new_data``: ``getdata`` after a finished measurement loses the data and answers
            ``no new data available``.
            ``fw_bw`` (also ``deviation=0.01``, relative extra backward rolling time): the Lovis
            condition becomes ``FW/BW dev. too high`` (derived from the rolling times).

        Raises:
            ValueError: unknown kind (LIMS-only kinds included) or parameter.
        """
        extra = {"commands"} if kind in LINE_FAULTS else {"deviation"} if kind == "fw_bw" else set()
        if kind not in SERIAL_FAULTS:
            raise ValueError(f"RS-232 densimeter simulator: unknown fault {kind!r}; "
                             f"supported: {', '.join(SERIAL_FAULTS)}")
        if set(params) - extra - {"count"}:
            raise ValueError(f"fault {kind!r} takes {sorted(extra | {'count'})}, got {sorted(params)}")
        commands = params.get("commands")
        fault = _Fault(params.get("count"), None if commands is None else frozenset(commands),
                       float(params.get("deviation", 0.01)))
        with self._lock:
            if kind == "fw_bw":
                self.core.fw_bw = FwBwFault(fault.deviation, fault.count)
            else:
                self.faults[kind] = fault

    def clear_faults(self) -> None:
        """Remove every injected fault (also the core's ``fw_bw``)."""
        with self._lock:
            self.faults.clear()
            self.core.fw_bw = None

    def _use(self, kind: str, command: str) -> bool:
        """True if fault ``kind`` hits this reply to ``command`` (one use of its count)."""
        fault = self.faults.get(kind)
        if fault is None or not fault.applies(command):
            return False
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                del self.faults[kind]
        return True

    # ------------------------------------------------------------------ serial side
    def receive(self, data: bytes) -> None:
        """Bytes from the host; each CR (or LF) ends a command line."""
        with self._lock:
            self._inbox += data.replace(b"\n", CR)
            while CR in self._inbox:
                line, _, rest = bytes(self._inbox).partition(CR)
                self._inbox = bytearray(rest)
                if line.strip():
                    self._execute(line.decode(CODEPAGE).strip())
            if len(self._inbox) > MAX_INBOX:
                self._inbox.clear()

    def transmit(self) -> bytes:
        """Bytes sent since the last call (each reply leaves ``response_delay`` s after its command)."""
        with self._lock:
            self._release(self.clock.now())
            out = bytes(self._outbox)
            self._outbox.clear()
            return out

    def tick(self, now: float, dt: float) -> None:
        """Clock listener: finish a due measurement, release due replies."""
        with self._lock:
            run = self._run
            if run is not None and now >= run.until:
                self._run, self._data = None, run.reading
                log.info("RS-232 densimeter: measurement (%s) finished", run.method.name)
            self._release(now)

    def _release(self, now: float) -> None:
        due = [d for t, d in self._pending if t <= now]
        self._pending = [(t, d) for t, d in self._pending if t > now]
        for data in due:
            self._outbox += data

    # ------------------------------------------------------------------ commands
    def _execute(self, line: str) -> None:
        text = " ".join(line.split()).lower()
        word = text.split(" ")[0]
        self.tick(self.clock.now(), 0.0)
        if (m := _START.fullmatch(text)) is not None:
            reply = self._start(m)
        elif (m := _SET_T.fullmatch(text)) is not None:
            reply, word = self._set_temperature(m), "set"
        elif word in self._handlers and text == word:
            reply = self._handlers[word](None)
        else:
            reply = "invalid command"
        log.debug("RS-232 densimeter: %r -> %r", line, reply)
        self._reply(word, reply)

    def _reply(self, command: str, text: str) -> None:
        payload = text.encode(CODEPAGE, errors="replace") + CR
        if self._use("no_reply", command):
            return
        if self._use("garbled", command):
            payload = _garble(payload[:-1]) + CR
        elif self._use("truncated", command):
            payload = payload[: max(1, (len(payload) - 1) // 2)]
        self._pending.append((self.clock.now() + self.ident.response_delay, payload))

    def _method(self, number: str | None) -> MethodSpec | None:
        if number is None:
            return self.params.methods.get(self.ident.default_method)
        return self.params.method_by_number(int(number))

    def _start(self, m: re.Match[str]) -> str:
        for kind, reply in START_FAULTS.items():
            if self._use(kind, "start"):
                return reply
        if self._run is not None:
            return "measurement already started"
        method = self._method(m.group(1))
        if method is None:
            return "invalid method"
        if not self.core.settled:
            return "heating"
        temperature = self.core.temperature
        reading = self.core.measure(self.core.cell().copy(), temperature, 1, method.viscosity)[0]
        self._run = _Run(method, self.clock.now() + method.repetition_duration, reading)
        self._started_once = True
        return "measurement started"

    def _set_temperature(self, m: re.Match[str]) -> str:
        if self._run is not None:
            return "measurement already started"
        try:
            kelvin = float(m.group(1)) + KELVIN
        except ValueError:
            return "wrong parameter value"
        if not self.core.in_range(kelvin):
            return "wrong parameter value"
        self.core.set_point = kelvin
        return "accepted"

    def _finished(self, _: re.Match[str] | None) -> str:
        if self._run is not None:
            return "Measurement not finished"
        return "Measurement finished" if self._started_once else "Measurement not started"

    def _getdata(self, _: re.Match[str] | None) -> str:
        data, self._data = self._data, None
        if data is None or self._use("no_new_data", "getdata"):
            return "no new data available"
        return ";".join((
            _fmt(data.density, 5), _fmt(data.temperature - KELVIN, 3), data.density_condition,
            _fmt(data.viscosity, 4), _fmt(data.temperature - KELVIN, 3), data.lovis_condition,
            _fmt(data.time_fw, 3), _fmt(data.time_bw, 3)))

    def _abort(self, _: re.Match[str] | None) -> str:
        if self._run is None:
            return "Measurement not started"
        self._run, self._started_once = None, False
        return "measurement aborted"

    def _getid(self, _: re.Match[str] | None) -> str:
        return f"{self.ident.serial_number};{self.ident.model} {self.ident.firmware};{self.ident.protocol}"
