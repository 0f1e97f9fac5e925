"""``qmixpump.Pump`` of the stand-in ``qmixsdk``: device state, unit handling, checks.

Motion is delegated to the simulated world (``World.start_pump`` / ``stop_pump`` /
``pump_status``, canonical mL and mL/s); this module keeps what the pump's drive itself knows:
enable and calibration state, syringe parameters and the configured units.

Syringe physics (``shared/docs/device_protocols.md``, CETONI section): A = π(d/2)²,
V_max = A·stroke, maximum flow = A × 6.33 mm/s.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

from simulators.qmixsdk._core import Context, ErrorCode, TimeUnit, UnitPrefix, VolumeUnit

MAX_PISTON_SPEED = 6.33
"""mm/s, drive limit of the neMESYS (old ASAB figure, device_protocols.md)."""

TOLERANCE = 1e-9
"""Relative slack on range checks so that a limit read back from the SDK is accepted."""

F = TypeVar("F", bound=Callable[..., Any])


class SyringeParam(NamedTuple):
    """Syringe parameters as the drive stores them (mm)."""

    inner_diameter_mm: float
    max_piston_stroke_mm: float


@dataclass
class PumpState:
    """One pump drive as the SDK sees it. Canonical mL and mL/s inside."""

    ctx: Context
    device: str
    pump: str
    inner_diameter: float
    stroke: float
    enabled: bool = False
    calibrated_at: float | None = None
    volume_prefix: UnitPrefix = UnitPrefix.milli
    flow_prefix: UnitPrefix = UnitPrefix.milli
    time_unit: TimeUnit = TimeUnit.per_minute
    busy_until: float = 0.0
    no_reply: int = 0
    delivery_factor: float = 1.0
    """True displaced / commanded volume (a syringe whose real bore differs from its nominal
    size). The drive knows only its plunger, so it reports nominal volumes; the world moves
    commanded × factor. Set it to test pump calibration (asab.actions.calibration)."""

    # -- units ------------------------------------------------------------------------
    def volume_in(self, value: float) -> float:
        """Configured volume unit → mL (litres × 10^prefix × 1000)."""
        return _finite(self, value) * 10.0 ** int(self.volume_prefix) * 1000.0

    def volume_out(self, ml: float) -> float:
        return ml / (10.0 ** int(self.volume_prefix) * 1000.0)

    def flow_in(self, value: float) -> float:
        """Configured flow unit → mL/s."""
        return _finite(self, value) * 10.0 ** int(self.flow_prefix) * 1000.0 / int(self.time_unit)

    def flow_out(self, mls: float) -> float:
        return mls * int(self.time_unit) / (10.0 ** int(self.flow_prefix) * 1000.0)

    # -- syringe ----------------------------------------------------------------------
    @property
    def volume_max(self) -> float:
        """mL: A·stroke with A = π(d/2)² (mm³ → mL)."""
        return math.pi * (self.inner_diameter / 2.0) ** 2 * self.stroke / 1000.0

    @property
    def flow_max(self) -> float:
        """mL/s: A × 6.33 mm/s."""
        return math.pi * (self.inner_diameter / 2.0) ** 2 * MAX_PISTON_SPEED / 1000.0

    # -- state ------------------------------------------------------------------------
    def status(self) -> Any:
        """The world's pump status in the drive's nominal (plunger) volumes."""
        real, f = self.ctx.world.pump_status(self.pump), self.delivery_factor
        if f == 1.0:
            return real
        return dataclasses.replace(real, fill_level=real.fill_level / f, flow=real.flow / f,
                                   dosed_volume=real.dosed_volume / f,
                                   target_volume=real.target_volume / f)

    def in_fault(self) -> bool:
        return self.status().fault is not None

    def is_calibrated(self) -> bool:
        return self.calibrated_at is not None and self.ctx.now() >= self.calibrated_at - 1e-12

    def require_ready(self) -> None:
        """Raise unless the drive may move: no fault, enabled, calibrated."""
        if self.in_fault():
            self.ctx.fail(ErrorCode.FAULT, self.device, str(self.status().fault))
        if not self.enabled:
            self.ctx.fail(ErrorCode.DISABLED, self.device)
        if not self.is_calibrated():
            self.ctx.fail(ErrorCode.NOT_CALIBRATED, self.device)

    def busy(self) -> bool:
        """True while an injected foreign operation keeps the drive busy."""
        return self.ctx.now() < self.busy_until

    def move(self, direction: Literal["aspirate", "dispense"], volume: float, flow: float) -> None:
        """Check and start a move of ``volume`` mL at ``flow`` mL/s (both > 0)."""
        self.require_ready()
        if self.busy():
            self.ctx.fail(ErrorCode.BUSY, self.device, "another operation is running")
        if not 0.0 < flow <= self.flow_max * (1.0 + TOLERANCE):
            self.ctx.fail(ErrorCode.FLOW_OUT_OF_RANGE, self.device, f"{flow} mL/s")
        fill = self.status().fill_level
        room = self.volume_max - fill if direction == "aspirate" else fill
        if not 0.0 < volume <= room + TOLERANCE * self.volume_max:
            self.ctx.fail(ErrorCode.VOLUME_OUT_OF_RANGE, self.device, f"{direction} {volume} mL")
        f = self.delivery_factor  # true displacement of the plunger's nominal volume
        self.ctx.world.start_pump(self.pump, direction, volume * f, flow * f)

    def stop(self) -> None:
        self.busy_until = 0.0
        self.ctx.world.stop_pump(self.pump)


def _finite(state: PumpState, value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        state.ctx.fail(ErrorCode.INVALID_PARAMETER, state.device, f"{value!r}")
    return number


def _locked(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(self: "PumpBase", *args: Any) -> Any:
        with self._ctx.lock:
            return fn(self, *args)

    return wrapper  # type: ignore[return-value]


class PumpBase:
    """``qmixpump.Pump``: a handle to one pump drive; bind it with a ``lookup_*`` call."""

    _ctx: ClassVar[Context]
    _valve_cls: ClassVar[type]

    def __init__(self) -> None:
        self._state: PumpState | None = None

    # -- look-up (bus open; start not needed) -----------------------------------------
    @classmethod
    def get_no_of_pumps(cls) -> int:
        """Number of pump devices in the device configuration."""
        with cls._ctx.lock:
            cls._ctx.require_open()
            return len(cls._ctx.pumps)

    @_locked
    def lookup_by_name(self, name: str) -> None:
        """Bind this handle to the pump device ``name``. Raises DeviceError if unknown."""
        self._ctx.require_open(name)
        if name not in self._ctx.pumps:
            self._ctx.fail(ErrorCode.NO_SUCH_DEVICE, name)
        self._state = self._ctx.pumps[name]

    @_locked
    def lookup_by_device_index(self, index: int) -> None:
        """Bind this handle to the ``index``-th pump (0-based, configuration order)."""
        self._ctx.require_open()
        names = list(self._ctx.pumps)
        if not 0 <= index < len(names):
            self._ctx.fail(ErrorCode.NO_SUCH_DEVICE, detail=f"pump index {index}")
        self._state = self._ctx.pumps[names[index]]

    def _dev(self) -> PumpState:
        if self._state is None:
            self._ctx.fail(ErrorCode.NOT_BOUND)
        self._ctx.require_started(self._state.device)
        self._ctx.check_reply(self._state.device, self._state)
        return self._state

    # -- units ------------------------------------------------------------------------
    @_locked
    def set_volume_unit(self, prefix: UnitPrefix, unit: VolumeUnit) -> None:
        """Volumes in and out are in ``prefix`` litres from now on."""
        s = self._dev()
        s.volume_prefix = _enum(s, UnitPrefix, prefix)
        _enum(s, VolumeUnit, unit)

    @_locked
    def set_flow_unit(self, prefix: UnitPrefix, unit: VolumeUnit, time_unit: TimeUnit) -> None:
        """Flows in and out are in ``prefix`` litres per ``time_unit`` from now on."""
        s = self._dev()
        _enum(s, VolumeUnit, unit)
        s.flow_prefix, s.time_unit = _enum(s, UnitPrefix, prefix), _enum(s, TimeUnit, time_unit)

    # -- syringe and limits -----------------------------------------------------------
    @_locked
    def set_syringe_param(self, inner_diameter_mm: float, max_piston_stroke_mm: float) -> None:
        """Set the syringe's inner diameter and maximum piston stroke (mm, both > 0)."""
        s = self._dev()
        d, stroke = _finite(s, inner_diameter_mm), _finite(s, max_piston_stroke_mm)
        if d <= 0 or stroke <= 0:
            s.ctx.fail(ErrorCode.INVALID_PARAMETER, s.device, "syringe parameters must be > 0")
        s.inner_diameter, s.stroke = d, stroke

    @_locked
    def get_syringe_param(self) -> SyringeParam:
        s = self._dev()
        return SyringeParam(s.inner_diameter, s.stroke)

    @_locked
    def get_flow_rate_max(self) -> float:
        """Maximum flow (A × 6.33 mm/s) in the configured flow unit."""
        s = self._dev()
        return s.flow_out(s.flow_max)

    @_locked
    def get_volume_max(self) -> float:
        """Syringe volume (A·stroke) in the configured volume unit."""
        s = self._dev()
        return s.volume_out(s.volume_max)

    # -- drive ------------------------------------------------------------------------
    @_locked
    def enable(self, enable: bool) -> None:
        """Enable or disable the drive; disabling stops it; enabling fails in fault state."""
        s = self._dev()
        if enable and s.in_fault():
            s.ctx.fail(ErrorCode.FAULT, s.device, "clear the fault before enabling")
        if not enable:
            s.stop()
        s.enabled = bool(enable)

    @_locked
    def is_enabled(self) -> bool:
        return self._dev().enabled

    @_locked
    def is_in_fault_state(self) -> bool:
        return self._dev().in_fault()

    @_locked
    def clear_fault(self) -> None:
        s = self._dev()
        s.ctx.world.clear_pump_fault(s.pump)

    @_locked
    def calibrate(self) -> None:
        """Start the calibration move; it finishes after the context's calibration time."""
        s = self._dev()
        if s.in_fault():
            s.ctx.fail(ErrorCode.FAULT, s.device, str(s.status().fault))
        if not s.enabled:
            s.ctx.fail(ErrorCode.DISABLED, s.device)
        s.calibrated_at = s.ctx.now() + s.ctx.calibration_time

    @_locked
    def is_calibration_finished(self) -> bool:
        return self._dev().is_calibrated()

    # -- motion -----------------------------------------------------------------------
    @_locked
    def aspirate(self, volume: float, flow: float) -> None:
        """Draw ``volume`` at ``flow`` (configured units, both > 0)."""
        s = self._dev()
        s.move("aspirate", s.volume_in(volume), s.flow_in(flow))

    @_locked
    def dispense(self, volume: float, flow: float) -> None:
        """Push ``volume`` at ``flow`` (configured units, both > 0)."""
        s = self._dev()
        s.move("dispense", s.volume_in(volume), s.flow_in(flow))

    @_locked
    def pump_volume(self, volume: float, flow: float) -> None:
        """Move a signed ``volume`` (negative = aspirate) at ``|flow|``."""
        s = self._dev()
        ml, mls = s.volume_in(volume), abs(s.flow_in(flow))
        s.move("aspirate" if ml < 0 else "dispense", abs(ml), mls)

    @_locked
    def set_fill_level(self, level: float, flow: float) -> None:
        """Move the plunger until the syringe holds ``level`` (no-op if it already does)."""
        s = self._dev()
        delta = s.volume_in(level) - s.status().fill_level
        if not 0.0 <= s.volume_in(level) <= s.volume_max * (1.0 + TOLERANCE):
            s.ctx.fail(ErrorCode.VOLUME_OUT_OF_RANGE, s.device, f"fill level {level}")
        if abs(delta) > TOLERANCE * s.volume_max:
            s.move("aspirate" if delta > 0 else "dispense", abs(delta), abs(s.flow_in(flow)))

    @_locked
    def generate_flow(self, flow: float) -> None:
        """Pump continuously at a signed ``flow`` (negative = aspirate) until full or empty."""
        s = self._dev()
        mls = s.flow_in(flow)
        if mls == 0.0:
            s.stop()
            return
        fill = s.status().fill_level
        direction: Literal["aspirate", "dispense"] = "aspirate" if mls < 0 else "dispense"
        s.move(direction, s.volume_max - fill if mls < 0 else fill, abs(mls))

    @_locked
    def stop_pumping(self) -> None:
        self._dev().stop()

    @classmethod
    def stop_all_pumps(cls) -> None:
        """Stop every pump on the bus."""
        with cls._ctx.lock:
            cls._ctx.require_started()
            for state in cls._ctx.pumps.values():
                state.stop()

    # -- status -----------------------------------------------------------------------
    @_locked
    def is_pumping(self) -> bool:
        s = self._dev()
        return bool(s.status().pumping) or s.busy()

    @_locked
    def get_fill_level(self) -> float:
        s = self._dev()
        return s.volume_out(s.status().fill_level)

    @_locked
    def get_dosed_volume(self) -> float:
        s = self._dev()
        return s.volume_out(s.status().dosed_volume)

    @_locked
    def get_flow_is(self) -> float:
        """Actual flow, signed (negative while aspirating), in the configured flow unit."""
        s = self._dev()
        return s.flow_out(s.status().flow)

    @_locked
    def get_target_volume(self) -> float:
        s = self._dev()
        return s.volume_out(s.status().target_volume)

    # -- built-in valve ---------------------------------------------------------------
    @_locked
    def has_valve(self) -> bool:
        """True if the configuration has ``<device minus _Pump>_Valve`` as a valve device."""
        s = self._dev()
        return valve_device_of(s.device) in self._ctx.valves

    @_locked
    def get_valve(self) -> Any:
        """A ``qmixvalve.Valve`` handle bound to the pump's built-in valve."""
        s = self._dev()
        name = valve_device_of(s.device)
        if name not in self._ctx.valves:
            s.ctx.fail(ErrorCode.NO_VALVE, s.device)
        valve = self._valve_cls()
        valve.lookup_by_name(name)
        return valve


def valve_device_of(pump_device: str) -> str:
    """QmixElements naming: ``neMESYS_Low_Pressure_1_Pump`` → ``neMESYS_Low_Pressure_1_Valve``."""
    base = pump_device[: -len("_Pump")] if pump_device.endswith("_Pump") else pump_device
    return base + "_Valve"


E = TypeVar("E", UnitPrefix, TimeUnit, VolumeUnit)


def _enum(state: PumpState, kind: type[E], value: Any) -> E:
    try:
        return kind(value)
    except ValueError:
        detail = f"{value!r} is no {kind.__name__}"
        state.ctx.fail(ErrorCode.INVALID_PARAMETER, state.device, detail)
