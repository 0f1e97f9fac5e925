"""Frames of the DMA 4100 M + Lovis 2000 ME RS-232 remote control: pure encode/decode functions.

Protocol (``shared/docs/device_protocols.md``, Anton Paar, "RS-232 remote control"): 9600 8-N-1,
no handshake; every command and every reply is one line ending in CR; columns are separated by
``;``; text is code page 850 (``°`` = 0xF8, ``³`` = 0xFC, ``·`` = 0xFA); English, decimal point.

========================  ======================================================================
command                   replies
========================  ======================================================================
``start [method_no]``     ``measurement started`` | ``measurement already started`` |
                          ``invalid method`` | ``heating``
``finished``              ``Measurement not started`` | ``Measurement not finished`` |
                          ``Measurement finished``
``getdatahead``           column names, e.g. ``Density;Density Temperature;Density Condition;…``
``getdataunit``           units, e.g. ``g/cm³;°C;-;…``
``getdata``               the last results ONCE, e.g. ``1.21120;25.001;valid;…``, afterwards
                          ``no new data available``
``abort``                 (reply not documented; any line is accepted)
``getid``                 serial number / model and firmware / protocol version
``set temperature 25.000``  ``accepted`` | ``wrong parameter value`` (°C; only when idle)
========================  ======================================================================

Replies are compared case-insensitively with runs of blanks collapsed (the manual writes
``Measurement finished`` but ``measurement started``). Units come from ``getdataunit`` and are
read with pint; nothing is assumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import pint

from asab.drivers.base import RepetitionResult
from asab.errors import Cause, DeviceBusy, DeviceError, TransportError, as_cause
from asab.units import CANONICAL, ureg

LINE_END = b"\r"
"""Every command and reply ends with CR (device_protocols.md)."""
ENCODING = "cp850"
"""Code page 850 (device_protocols.md)."""
SEPARATOR = ";"
KELVIN = 273.15
"""0 °C in K (exact, SI)."""



class Reply(StrEnum):
    """The documented status replies, normalised (:func:`normalise`): compare a normalised
    reply with a member (a ``StrEnum``, so ``Reply.HEATING == "heating"``)."""

    STARTED = "measurement started"
    ALREADY_STARTED = "measurement already started"
    INVALID_METHOD = "invalid method"
    HEATING = "heating"
    NOT_STARTED = "measurement not started"
    NOT_FINISHED = "measurement not finished"
    FINISHED = "measurement finished"
    NO_NEW_DATA = "no new data available"
    ACCEPTED = "accepted"
    WRONG_PARAMETER = "wrong parameter value"


STARTED, ALREADY_STARTED, INVALID_METHOD = Reply.STARTED, Reply.ALREADY_STARTED, Reply.INVALID_METHOD
HEATING, NOT_STARTED, NOT_FINISHED = Reply.HEATING, Reply.NOT_STARTED, Reply.NOT_FINISHED
FINISHED, NO_NEW_DATA, ACCEPTED = Reply.FINISHED, Reply.NO_NEW_DATA, Reply.ACCEPTED
WRONG_PARAMETER = Reply.WRONG_PARAMETER
"""Module-level names of the :class:`Reply` members (as before the enum)."""
FINISHED_STATES = frozenset({NOT_STARTED, NOT_FINISHED, FINISHED})
"""Every documented reply to ``finished`` (normalised)."""
_REFUSALS = {
    HEATING: (DeviceBusy, Cause.HEATING, "the cell is still heating/cooling"),
    ALREADY_STARTED: (DeviceBusy, Cause.ALREADY_STARTED, "a measurement is running"),
    INVALID_METHOD: (DeviceError, Cause.INVALID_METHOD, None),
    WRONG_PARAMETER: (DeviceError, Cause.WRONG_PARAMETER, None),
}
"""Refusing reply → (error class, cause, message; ``None``: the reply itself)."""

DENSITY, DENSITY_T, DENSITY_COND = "Density", "Density Temperature", "Density Condition"
VISCOSITY = ("Lovis Dyn. Viscosity", "Dyn. Viscosity", "Lovis Dynamic Viscosity")
LOVIS_T = ("Lovis Temperature",)
LOVIS_COND = ("Lovis Condition",)
"""Column names the driver reads (first match wins); the Lovis columns are optional."""

_NO_VALUE = re.compile(r"[-\u2010-\u2015\u2212]*")
_COMMAND = re.compile(r"[ -:<-~]+")  # printable ASCII without ';'


class ReplyError(TransportError):
    """A reply that is not a valid frame: ``cause`` is :attr:`Cause.TRUNCATED_REPLY` or
    :attr:`Cause.GARBLED_REPLY` (a member's value string is coerced, see
    :func:`asab.errors.as_cause`)."""

    def __init__(self, device: str, cause: Cause | str, message: str):
        self.cause = as_cause(cause)
        super().__init__(device, f"{self.cause}: {message}")


# ------------------------------------------------------------------------------------ encoding
def encode_command(command: str) -> bytes:
    """Frame one command: its text in code page 850 followed by CR.

    Raises:
        ValueError: empty, or characters outside printable ASCII, or ``;``.
    """
    if not _COMMAND.fullmatch(command) or command != command.strip():
        raise ValueError(f"invalid RS-232 command {command!r}")
    return command.encode(ENCODING) + LINE_END


def encode_start(method_number: int | None = None) -> bytes:
    """``start`` (the instrument's current method) or ``start <n>``, e.g. ``b"start 1\\r"``."""
    if method_number is None:
        return encode_command("start")
    if method_number < 0:
        raise ValueError(f"method number must be >= 0, got {method_number}")
    return encode_command(f"start {int(method_number)}")


def encode_set_temperature(kelvin: float) -> bytes:
    """``set temperature <°C with 3 decimals>``, e.g. 298.15 K → ``b"set temperature 25.000\\r"``."""
    return encode_command(f"set temperature {kelvin - KELVIN:.3f}")


# ------------------------------------------------------------------------------------ decoding
def decode_reply(frame: bytes, device: str = "densimeter") -> str:
    """One reply line as text (code page 850, CR and a stray LF removed, outer blanks stripped).

    Raises:
        ReplyError: cause ``"truncated reply"``: the frame does not end with CR.
    """
    if not frame.endswith(LINE_END):
        raise ReplyError(device, Cause.TRUNCATED_REPLY, f"no line end in {frame!r}")
    return frame.decode(ENCODING).strip("\r\n").strip()


def normalise(reply: str) -> str:
    """Lower case, runs of blanks collapsed: the form replies are compared in."""
    return " ".join(reply.split()).lower()


def columns(line: str) -> list[str]:
    """Split a ``;``-separated line into stripped fields (a trailing ``;`` adds no field)."""
    fields = [f.strip() for f in line.split(SEPARATOR)]
    return fields[:-1] if len(fields) > 1 and fields[-1] == "" else fields


def raise_for_reply(device: str, command: str, reply: str) -> None:
    """Raise the typed error a refusing reply stands for; return for any other reply.

    Raises:
        DeviceBusy: ``heating`` (:attr:`Cause.HEATING`) or ``measurement already started``
            (:attr:`Cause.ALREADY_STARTED`).
        DeviceError: ``invalid method`` or ``wrong parameter value`` (the cause of that name).
    """
    refusal = _REFUSALS.get(normalise(reply))
    if refusal is not None:
        error, cause, why = refusal
        raise error(device, cause, f"{command!r} refused: {why or reply}")


# ------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class Layout:
    """Where the values are in a ``getdata`` line and in which units (from head + unit lines).

    Attributes:
        head: column names as reported.
        index: role (``density``, ``density_t``, ``density_cond``, ``viscosity``, ``lovis_t``,
            ``lovis_cond``) → column index; the Lovis roles may be missing.
        units: role → pint unit of the value columns present.
    """

    head: tuple[str, ...]
    index: dict[str, int]
    units: dict[str, pint.Unit]


_ROLES = {
    "density": ((DENSITY,), "density"), "density_t": ((DENSITY_T,), "temperature"),
    "density_cond": ((DENSITY_COND,), None), "viscosity": (VISCOSITY, "viscosity"),
    "lovis_t": (LOVIS_T, "temperature"), "lovis_cond": (LOVIS_COND, None),
}
_REQUIRED_ROLES = ("density", "density_t", "density_cond")


def parse_layout(head_line: str, unit_line: str, device: str = "densimeter") -> Layout:
    """Read the ``getdatahead`` and ``getdataunit`` replies.

    Raises:
        DeviceError: cause ``"unexpected data layout"``: a density column missing or the unit
            line has another number of fields; cause ``"unknown unit"``: a value column's unit
            is not a unit of its quantity (e.g. ``-`` or ``mPa·s`` for a density).
    """
    head, units = columns(head_line), columns(unit_line)
    if len(units) != len(head):
        raise DeviceError(device, Cause.UNEXPECTED_LAYOUT,
                          f"{len(head)} columns but {len(units)} units: {unit_line!r}")
    index: dict[str, int] = {}
    for role, (names, _) in _ROLES.items():
        found = next((head.index(n) for n in names if n in head), None)
        if found is not None:
            index[role] = found
    missing = [r for r in _REQUIRED_ROLES if r not in index]
    if missing:
        raise DeviceError(device, Cause.UNEXPECTED_LAYOUT, f"columns {missing} not in {head_line!r}")
    parsed = {role: _unit(units[i], _ROLES[role][1], head[i], device)
              for role, i in index.items() if _ROLES[role][1] is not None}
    return Layout(tuple(head), index, parsed)


_UNIT_TEXT = re.compile(r"[A-Za-z°µ³·/*^ 0-9]+")
"""What a unit cell of the instrument's table may hold (e.g. ``g/cm3``, ``mPa·s``, ``°C``)."""


def _unit(text: str, kind: str, column: str, device: str) -> pint.Unit:
    try:
        if _NO_VALUE.fullmatch(text.strip()):
            raise ValueError("no unit")
        if len(text) > 32 or not _UNIT_TEXT.fullmatch(text.strip()):
            raise ValueError("not a unit name")  # nothing odd reaches pint's parser
        unit = ureg.parse_units(text.replace("cm3", "cm³").replace("m3", "m³"))
        ureg.Quantity(1.0, unit).to(CANONICAL[kind])
    except (pint.errors.PintError, ValueError, TypeError, AttributeError, AssertionError) as exc:
        # pint's parser can fail with AssertionError on stray operators
        raise DeviceError(device, Cause.UNKNOWN_UNIT, f"column {column!r}: {text!r} is not a {kind} unit") from exc
    return unit


def _value(text: str, unit: pint.Unit, kind: str) -> float | None:
    """A number of ``getdata`` in canonical units; ``None`` for ``---``. Raises ValueError."""
    text = text.strip()
    if _NO_VALUE.fullmatch(text):
        return None
    return float(ureg.Quantity(float(text), unit).to(CANONICAL[kind]).magnitude)


def parse_data(line: str, layout: Layout, repetition: int) -> RepetitionResult:
    """One ``getdata`` line → one repetition, in g/cm³, K and mPa·s.

    A value is valid only with the condition ``valid`` and a number (``---`` = no value).
    Without Lovis columns the viscosity is ``None`` with condition ``---``.

    Raises:
        ValueError: wrong number of fields or a field that is neither a number nor ``---``
            (a garbled line).
    """
    fields = columns(line)
    if len(fields) != len(layout.head):
        raise ValueError(f"{len(fields)} fields, expected {len(layout.head)}: {line!r}")

    def get(role: str, kind: str | None = None) -> float | str | None:
        if role not in layout.index:
            return None if kind else "---"
        raw = fields[layout.index[role]]
        return _value(raw, layout.units[role], kind) if kind else raw

    density, eta = get("density", "density"), get("viscosity", "viscosity")
    t_density, t_lovis = get("density_t", "temperature"), get("lovis_t", "temperature")
    d_cond, v_cond = str(get("density_cond")), str(get("lovis_cond"))
    return RepetitionResult(
        repetition=repetition, density=density, density_condition=d_cond,
        density_valid=normalise(d_cond) == "valid" and density is not None,
        density_temperature=t_density, viscosity=eta, viscosity_condition=v_cond,
        viscosity_valid=normalise(v_cond) == "valid" and eta is not None,
        viscosity_temperature=t_lovis,
    )
