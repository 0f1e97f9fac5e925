"""Shared state, enums, error codes and the bus of the stand-in ``qmixsdk``.

The surface mirrors the vendor wrapper as described in ``shared/docs/device_protocols.md``
(CETONI section). Enum values of :class:`UnitPrefix` and :class:`TimeUnit` are the documented
ones; error codes and the value of ``VolumeUnit.litres`` are this stand-in's own.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

if TYPE_CHECKING:
    from simulators.qmixsdk._pump import PumpState
    from simulators.qmixsdk._valve import ValveState

logger = logging.getLogger(__name__)


class UnitPrefix(IntEnum):
    """Decimal exponents (documented: unit 0, deci −1, centi −2, milli −3, micro −6)."""

    unit = 0
    deci = -1
    centi = -2
    milli = -3
    micro = -6


class TimeUnit(IntEnum):
    """Seconds per time unit of a flow (documented: per_second 1, per_minute 60, per_hour 3600)."""

    per_second = 1
    per_minute = 60
    per_hour = 3600


class VolumeUnit(IntEnum):
    """Base volume unit. The SDK only offers litres; the value is this stand-in's own."""

    litres = 1


class ErrorCode(IntEnum):
    """Error codes of the stand-in (negative, errno-like; not the vendor's numbers)."""

    BUS_NOT_OPEN = -1001
    BUS_NOT_STARTED = -1002
    BUS_STATE = -1003
    NO_SUCH_DEVICE = -1004
    NOT_BOUND = -1005
    NOT_CALIBRATED = -1006
    DISABLED = -1007
    FAULT = -1008
    FLOW_OUT_OF_RANGE = -1009
    VOLUME_OUT_OF_RANGE = -1010
    INVALID_PARAMETER = -1011
    NO_VALVE = -1012
    POSITION_OUT_OF_RANGE = -1013
    NO_REPLY = -1014
    BUSY = -1015


ERROR_MESSAGES: dict[int, str] = {
    ErrorCode.BUS_NOT_OPEN: "bus is not open",
    ErrorCode.BUS_NOT_STARTED: "bus is not started (call Bus.start() first)",
    ErrorCode.BUS_STATE: "invalid bus state for this call",
    ErrorCode.NO_SUCH_DEVICE: "no device with this name or index in the device configuration",
    ErrorCode.NOT_BOUND: "device handle is not bound (look the device up first)",
    ErrorCode.NOT_CALIBRATED: "pump drive is not calibrated",
    ErrorCode.DISABLED: "pump drive is not enabled",
    ErrorCode.FAULT: "device is in fault state",
    ErrorCode.FLOW_OUT_OF_RANGE: "flow rate out of range",
    ErrorCode.VOLUME_OUT_OF_RANGE: "volume out of range",
    ErrorCode.INVALID_PARAMETER: "invalid parameter",
    ErrorCode.NO_VALVE: "pump has no built-in valve",
    ErrorCode.POSITION_OUT_OF_RANGE: "valve position out of range",
    ErrorCode.NO_REPLY: "device did not reply (CAN timeout)",
    ErrorCode.BUSY: "device is busy",
}


def error_message(code: int) -> str:
    """Text for an error ``code`` (unknown codes give a generic text)."""
    return ERROR_MESSAGES.get(code, f"unknown error {code}")


class DeviceError(Exception):
    """Failure of an SDK call.

    Attributes:
        errorcode: one of :class:`ErrorCode` (negative int).
    """

    def __init__(self, message: str, errorcode: int) -> None:
        self.errorcode = int(errorcode)
        super().__init__(message)


@dataclass(frozen=True)
class Event:
    """One bus event. ``event_id`` 0 means "no event" (see :meth:`is_valid`)."""

    event_id: int = 0
    device: str = ""
    data: int = 0
    string: str = ""

    def is_valid(self) -> bool:
        return self.event_id != 0


ERROR_EVENT = 1
"""``Event.event_id`` of an error event (a device call failed; ``data`` holds the code)."""


@dataclass
class Context:
    """State of one stand-in SDK instance: the bus, the devices and the world behind them.

    Attributes:
        world: the simulated world (``simulators.world.World`` API).
        clock: time source; if it has ``add_listener`` the stand-in finishes valve moves on it.
        calibration_time: s a pump calibration takes.
        valve_switch_time: s a valve switch takes.
    """

    world: Any
    clock: Any
    calibration_time: float = 2.0
    valve_switch_time: float = 0.5
    is_open: bool = False
    is_started: bool = False
    pumps: dict[str, "PumpState"] = field(default_factory=dict)
    valves: dict[str, "ValveState"] = field(default_factory=dict)
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=1000))
    lock: threading.RLock = field(default_factory=threading.RLock)

    def fail(self, code: ErrorCode, device: str = "", detail: str = "") -> NoReturn:
        """Record an error event and raise :class:`DeviceError` with ``code``."""
        text = error_message(code) + (f": {detail}" if detail else "")
        message = f"{device}: {text}" if device else text
        self.events.append(Event(ERROR_EVENT, device, int(code), message))
        logger.debug("qmixsdk stand-in error %s", message)
        raise DeviceError(message, code)

    def require_open(self, device: str = "") -> None:
        if not self.is_open:
            self.fail(ErrorCode.BUS_NOT_OPEN, device)

    def require_started(self, device: str = "") -> None:
        self.require_open(device)
        if not self.is_started:
            self.fail(ErrorCode.BUS_NOT_STARTED, device)

    def now(self) -> float:
        return float(self.clock.now())

    def check_reply(self, device: str, state: Any) -> None:
        """Fail with ``NO_REPLY`` while ``state.no_reply`` (calls left to fail, −1 = all) is set."""
        if state.no_reply:
            if state.no_reply > 0:
                state.no_reply -= 1
            self.fail(ErrorCode.NO_REPLY, device)

    def tick(self, now: float, dt: float) -> None:
        """Clock listener: let pending valve switches arrive."""
        with self.lock:
            for state in self.valves.values():
                state.settle(now)


class BusBase:
    """``qmixbus.Bus``: the process-wide CAN bus of the SDK (one per stand-in instance)."""

    _ctx: ClassVar[Context]

    def open(self, device_config_path: str, plugin_search_path: str | int = "") -> None:
        """Open the bus with a device configuration (paths are not read by the stand-in)."""
        with self._ctx.lock:
            if self._ctx.is_open:
                self._ctx.fail(ErrorCode.BUS_STATE, detail="bus already open")
            logger.debug(
                "qmixsdk stand-in: open %r (plugins %r)", device_config_path, plugin_search_path
            )
            self._ctx.is_open = True

    def start(self) -> None:
        """Start bus communication; device calls are allowed afterwards."""
        with self._ctx.lock:
            self._ctx.require_open()
            self._ctx.is_started = True

    def stop(self) -> None:
        """Stop every pump and bus communication (idempotent)."""
        with self._ctx.lock:
            if self._ctx.is_started:
                for state in self._ctx.pumps.values():
                    state.stop()
            self._ctx.is_started = False

    def close(self) -> None:
        """Stop (if started) and close the bus (idempotent)."""
        with self._ctx.lock:
            self.stop()
            self._ctx.is_open = False

    @staticmethod
    def get_err_msg(code: int) -> str:
        """Text for an SDK error ``code``."""
        return error_message(code)

    def read_event(self) -> Event:
        """Pop the oldest bus event; an invalid :class:`Event` when there is none."""
        with self._ctx.lock:
            return self._ctx.events.popleft() if self._ctx.events else Event()
