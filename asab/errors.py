"""The asab exception taxonomy.

Every failure in library code is raised as one of these; servers and the command line map
them to HTTP statuses or exit codes in one place each.

    AsabError
    ├── ConfigError          bad or inconsistent configuration (carries every problem found)
    ├── TransportError       the byte/SDK channel failed
    │   └── TransportTimeout no (complete) answer within the timeout
    │       └── WaitTimeout  :func:`asab.clock.poll_until` gave up waiting for something
    ├── DeviceError          the device rejected a command, is busy, or reports a fault
    │   ├── DeviceBusy
    │   └── DeviceFault
    ├── RoutingError         no physically possible route
    │   ├── NoRouteError     no path at all
    │   └── ValveConflictError  only paths that need two positions of one valve
    ├── FormulationError
    │   ├── NotMakeableError     request outside the makeable region (carries the closest)
    │   ├── BelowResolutionError a volume or flow below what a pump can deliver
    │   └── InsufficientStockError
    ├── RequestError         a job/request that is malformed
    └── BrokerError          FINALES2 client failures

A :class:`DeviceError` says *why* in :attr:`DeviceError.cause`, one member of :class:`Cause`
(never free text), so callers branch on a member, not on a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Cause(StrEnum):
    """Why a device (or the bench) refused or failed: the ``cause`` of a :class:`DeviceError`.

    A ``StrEnum``: each member *is* its value string, so ``exc.cause == "drive fault"`` still
    holds for code not yet switched to members, and JSON carries the value. Grouped by who
    raises it; "family" members say more in :attr:`DeviceError.detail` (the device's own code).
    """

    # -- CETONI pumps and valves (asab.drivers.cetoni, asab.drivers.cetoni_devices) --------
    SDK_ERROR = "sdk error"
    """A QmixSDK call failed (after the retries of a status query)."""
    DRIVE_FAULT = "drive fault"
    """The pump drive reports a fault state (latched until cleared)."""
    BUSY = "busy"
    """The device (or the bench, or a server's job slot) is busy with another operation."""
    FLOW_OUT_OF_RANGE = "flow out of range"
    """A flow outside the drive's limits (nothing moved)."""
    VOLUME_OUT_OF_RANGE = "volume out of range"
    """A volume beyond the syringe's capacity or content, or not > 0 (nothing moved)."""
    POSITION_OUT_OF_RANGE = "position out of range"
    """A valve position the valve does not have (nothing switched)."""
    VALVE_NOT_IN_POSITION = "valve did not reach position"
    """The valve's read-back position is not the commanded one within the switch timeout."""
    DOSED_VOLUME_MISMATCH = "dosed volume mismatch"
    """The dosed volume read back after a move differs from the commanded one."""
    FILL_LEVEL_MISMATCH = "fill level mismatch"
    """The syringe fill level read back after a move differs from the expected one."""
    SYRINGE_MISMATCH = "syringe mismatch"
    """The SDK does not return the syringe parameters that were set."""
    UNIT_MISMATCH = "unit mismatch"
    """The SDK's V_max or maximum flow disagrees with the configured syringe (wrong unit)."""

    # -- balance (asab.drivers.sartorius) --------------------------------------------------
    OVERLOAD = "overload"
    """The balance reports ``Stat High``: load above its capacity."""
    UNDERLOAD = "underload"
    """The balance reports ``Stat Low``: load below its zero range (pan missing?)."""
    APPLICATION_ERROR = "application error"
    """The balance reports ``Stat APP.ERR``."""
    BALANCE_ERROR = "balance error"
    """The balance reports ``Stat ERR ###``; ``detail`` holds the text, e.g. ``"ERR 101"``."""
    BALANCE_STATUS = "balance status"
    """Any other ``Stat`` line; ``detail`` holds its text (e.g. ``"Busy"``), if any."""
    UNKNOWN_UNIT = "unknown unit"
    """A unit that is not one of its quantity (a balance printing ``pcs``, a densimeter
    column in ``-``), or an unstable balance value before any unit is known."""

    # -- densimeter / viscometer (asab.drivers.antonpaar, asab.drivers.antonpaar_rs232) -----
    HEATING = "heating"
    """The cell has not reached the set point (RS-232 ``heating``)."""
    ALREADY_STARTED = "measurement already started"
    """A measurement is running (RS-232 reply)."""
    INVALID_METHOD = "invalid method"
    """The method number is not known to the instrument (RS-232 reply)."""
    WRONG_PARAMETER = "wrong parameter value"
    """A parameter out of the instrument's range, e.g. a set point (RS-232 reply)."""
    UNEXPECTED_LAYOUT = "unexpected data layout"
    """The data head or unit line lacks the density columns or does not match."""
    NO_NEW_DATA = "no new data available"
    """The instrument has no result to give (RS-232 ``getdata``), every time it was asked."""
    DATA_LOST = "data lost"
    """A result was consumed but its reply was lost or garbled on the way back."""
    NOT_STARTED = "measurement not started"
    """The instrument reports no measurement although ``start`` was accepted."""
    JOB_REJECTED = "job rejected"
    """The instrument rejected a LIMS job file (its error file says why)."""
    TRUNCATED_REPLY = "truncated reply"
    """A reply without its line end (:class:`~asab.drivers.antonpaar_rs232_codec.ReplyError`)."""
    GARBLED_REPLY = "garbled reply"
    """A reply that is not one the protocol allows (``ReplyError``)."""

    # -- the bench and its jobs (asab.actions, asab.drivers.interlock) ----------------------
    EMERGENCY_STOP = "emergency stop"
    """The emergency stop is latched: motion is refused until it is reset."""
    UNSAFE = "unsafe"
    """The bench could not be brought into a safe state (``SafetyError``)."""
    OUT_OF_SERVICE = "out of service"
    """The bench is out of service after a failed recovery."""
    NOT_CONFIGURED = "not configured"
    """The bench has no such instrument configured."""
    NO_DRIVER = "no driver"
    """A valve the tubing uses has no driver."""
    MOVE_TOO_LONG = "move too long"
    """A move would take longer than ``pump_timeout``."""
    CANNOT_REFILL = "cannot refill"
    """A syringe cannot be refilled for a step."""
    NO_LIQUID = "no liquid"
    """A pump draws nothing whose density is known: nothing to weigh."""
    NO_WASTE = "no waste"
    """No waste off the balance to flush into."""
    CALIBRATION_OUT_OF_RANGE = "calibration out of range"
    """A gravimetric calibration factor outside its limits."""
    NO_VALID_VALUE = "no valid value"
    """No valid density in any repetition."""
    WEIGHING_MISMATCH = "weighing mismatch"
    """The weighed volume differs from what passed the cell by more than the tolerance."""
    MASS_SHORT = "mass short"
    """Less mass on the balance than planned: a reservoir may be empty or a line leaking."""


def as_cause(cause: Cause | str) -> Cause:
    """``cause`` as a :class:`Cause` member.

    A member is returned as it is. A plain string that is a member's value is coerced
    (so callers not yet switched to members keep working); any other string is refused.

    Raises:
        ValueError: a string that is not the value of any member.
        TypeError: anything that is not a string.
    """
    if isinstance(cause, Cause):
        return cause
    if not isinstance(cause, str):
        raise TypeError(f"a device error's cause must be a Cause, not {type(cause).__name__}")
    try:
        return Cause(cause)
    except ValueError:
        raise ValueError(f"{cause!r} is not a Cause (add a member to asab.errors.Cause)") from None


class AsabError(Exception):
    """Base class of every error raised by asab."""


@dataclass(frozen=True)
class Problem:
    """One configuration problem: where it is and why it is wrong.

    Attributes:
        file: file name (or logical source such as ``bench.toml``).
        row: line number in the file as an editor shows it (header = line 1), or ``None``
            when the problem is not bound to a line (e.g. a field of ``bench.toml``).
        reason: human-readable explanation.
    """

    file: str
    row: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}" + (f", line {self.row}" if self.row is not None else "")
        return f"{where}: {self.reason}"


class ConfigError(AsabError):
    """Invalid configuration. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem("config", None, problems)]
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s):\n{lines}")


class TransportError(AsabError):
    """The channel to a device failed (closed port, framing error, SDK call failed).

    Attributes:
        device: configured device name.
        port: the serial port or URL, when a serial exchange failed (else ``None``).
        command: the command being exchanged, as it reads (e.g. ``"'getdata'"``), or ``None``.
    """

    def __init__(self, device: str, message: str, *, port: str | None = None,
                 command: str | None = None):
        self.device = device
        self.port = port
        self.command = command
        super().__init__(f"{device}: {message}")


class TransportTimeout(TransportError):
    """No complete answer from ``device`` within the timeout."""


class WaitTimeout(TransportTimeout):
    """:func:`asab.clock.poll_until` gave up: ``what`` did not happen within ``timeout`` s.

    Attributes:
        device: who was waited on.
        what: what was waited for, e.g. ``"the end of the move"``.
        timeout: the wait in s.
    """

    def __init__(self, device: str, what: str, timeout: float):
        self.what = what
        self.timeout = float(timeout)
        super().__init__(device, f"timed out after {timeout:g} s waiting for {what}")


class DeviceError(AsabError):
    """A device rejected a command or reported a fault.

    Args:
        device: configured device name.
        cause: a :class:`Cause` member; a string that is a member's value is coerced (see
            :func:`as_cause`), any other string raises ValueError, a non-string TypeError.
        message: human-readable text (default: the cause's value).
        detail: the device's own code or text where the cause is a family (e.g. ``"ERR
            101"`` for :attr:`Cause.BALANCE_ERROR`); ``None`` otherwise.

    Attributes:
        device: configured device name.
        cause: the :class:`Cause`.
        detail: as the argument.
    """

    def __init__(self, device: str, cause: Cause | str, message: str | None = None,
                 detail: str | None = None):
        self.device = device
        self.cause = as_cause(cause)
        self.detail = detail
        super().__init__(f"{device}: {message or self.cause}")


class DeviceBusy(DeviceError):
    """The device is busy with another operation."""


class DeviceFault(DeviceError):
    """The device reports a fault state (overload, position not reached, ...)."""


class RoutingError(AsabError):
    """No physically possible route between two nodes."""


class NoRouteError(RoutingError):
    """There is no path at all from source to target (with the given via/avoid)."""


class ValveConflictError(RoutingError):
    """Paths exist, but every one needs two positions of at least one valve at once."""

    def __init__(self, message: str, valves: tuple[str, ...] = ()):
        self.valves = valves
        super().__init__(message)


class FormulationError(AsabError):
    """A composition cannot be formulated as asked."""


class NotMakeableError(FormulationError):
    """The requested composition lies outside the makeable region.

    Attributes:
        requested: requested mole fractions by chemical name.
        closest: the closest makeable mole fractions by chemical name.
        distance: Euclidean distance between the two in mole-fraction space.
    """

    def __init__(self, requested: dict[str, float], closest: dict[str, float], distance: float):
        self.requested = dict(requested)
        self.closest = dict(closest)
        self.distance = float(distance)
        fmt = ", ".join(f"{k}={v:.4f}" for k, v in self.closest.items())
        super().__init__(
            f"composition not makeable: closest makeable is {fmt} (distance {self.distance:.4g})"
        )


class BelowResolutionError(FormulationError):
    """A volume or flow is below what the pump can deliver."""


class InsufficientStockError(FormulationError):
    """A reservoir does not hold enough stock solution for the plan."""


class RequestError(AsabError):
    """A job or broker request is malformed (missing field, unknown chemical, bad number)."""


class BrokerError(AsabError):
    """The FINALES2 broker call failed."""

    def __init__(self, message: str, status: int | None = None, permanent: bool = False):
        self.status = status
        self.permanent = permanent
        super().__init__(message)


def describe(exc: BaseException) -> dict[str, Any]:
    """Return a JSON-ready description of an exception.

    Returns:
        ``{"type", "message"}`` plus whichever of ``device``, ``cause`` (the :class:`Cause`'s
        value, a plain ``str``), ``detail`` (only when set), ``closest``, ``distance``,
        ``valves``, ``nodes`` the exception has.
    """
    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    for attr in ("device", "cause", "detail", "closest", "distance", "valves", "nodes"):
        value = getattr(exc, attr, None)
        if value is None and (attr == "detail" or not hasattr(exc, attr)):
            continue
        out[attr] = value.value if isinstance(value, Cause) else value
    return out
