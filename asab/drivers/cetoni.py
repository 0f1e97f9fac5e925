"""CETONI neMESYS syringe pumps and Qmix V valves through the QmixSDK Python wrapper.

The SDK surface used, and the start-up order, are those of ``shared/docs/device_protocols.md``
(CETONI section): open bus → look devices up → start bus → clear fault, enable → calibrate
and wait → set syringe parameters → set units → dose, polling ``is_pumping()``.

The SDK is injected as a namespace with ``qmixbus``, ``qmixpump`` and ``qmixvalve`` attributes
(a simulated bench passes a stand-in); without one, the vendor's ``qmixsdk`` is imported
lazily. Units are set once, at open, to mL and mL/s, so every number crossing the SDK is
canonical. All waits go through the injected :class:`~asab.clock.Clock`.

Not yet checked on real hardware.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from asab.clock import Clock, poll_until
from asab.config.models import BenchConfig, Syringe
from asab.errors import (
    Cause,
    ConfigError,
    DeviceError,
    DeviceFault,
    Problem,
    TransportTimeout,
    WaitTimeout,
)

from asab.drivers.interlock import Interlock
from asab.drivers.cetoni_devices import (
    BUS_DEVICE,
    UNIT_CHECK_TOLERANCE,
    CetoniPump,
    CetoniValve,
    SdkGuard,
    load_vendor_sdk,
)

logger = logging.getLogger(__name__)

FLOW_UNIT_SLACK = 2.0
"""Largest factor between the SDK's maximum flow and the configured syringe's (A × 6.33 mm/s)
accepted at open. Unit mix-ups are factors of 10 (prefixes) or 60 (per minute); the drive's
own limit depends on its gear, so small differences are only logged."""


@functools.cache
def _warn_unchecked() -> None:
    """Say once per process that this driver has not met real hardware yet."""
    logger.warning("asab.drivers.cetoni has not yet been checked on real CETONI hardware")


class CetoniBus:
    """The Qmix bus with its pumps and valves (implements :class:`asab.drivers.base.PumpBus`).

    Attributes:
        pumps: pump name → :class:`CetoniPump`, for every configured pump.
        valves: valve name → :class:`CetoniValve`, for every valve with ``driver == "cetoni"``.
    """

    def __init__(
        self,
        sdk: Any,
        bus: Any,
        guard: SdkGuard,
        pumps: dict[str, CetoniPump],
        valves: dict[str, CetoniValve],
    ) -> None:
        self._sdk = sdk
        self._bus = bus
        self._guard = guard
        self.interlock = guard.interlock
        """The e-stop latch every motion command of this bus passes."""
        self.pumps = pumps
        self.valves = valves
        self._closed = False

    @classmethod
    def open(cls, config: BenchConfig, clock: Clock, sdk: Any = None,
             interlock: Interlock | None = None) -> "CetoniBus":
        """Open the bus and bring every CETONI device up in the documented start-up order.

        Calibration runs the drives to their reference position (on real hardware this can
        move liquid) and is bounded by ``config.cetoni.calibration_timeout``.

        Args:
            config: the bench; uses ``cetoni``, ``pumps``, ``valves``, ``syringes``, ``settings``.
            clock: every wait is polled on it every ``settings.poll_interval`` s.
            sdk: namespace with ``qmixbus``, ``qmixpump``, ``qmixvalve``; default: the vendor's.
            interlock: the bench's e-stop latch every motion command passes (default: a new
                one, :attr:`interlock`).

        Raises:
            TransportError: SDK missing, or the bus cannot be opened or started.
            ConfigError: a device name is missing or unknown to the SDK, or a valve has fewer
                positions than configured (all such problems listed).
            TransportTimeout: a calibration did not finish in time.
            DeviceError / DeviceFault: a device refused a start-up step.
        """
        sdk = sdk if sdk is not None else load_vendor_sdk(config.cetoni.sdk_path)
        _warn_unchecked()
        bus = sdk.qmixbus.Bus()
        guard = SdkGuard(sdk, bus, interlock)
        paths = config.cetoni.device_config_path, config.cetoni.plugin_search_path
        guard.transport(bus.open, *paths)
        try:
            handles = _lookup_devices(sdk, config)
        except BaseException:
            _shutdown(sdk, bus, started=False)
            raise
        try:
            return cls._bring_up(sdk, bus, guard, config, clock, handles)
        except BaseException:
            _shutdown(sdk, bus)
            raise

    @classmethod
    def _bring_up(
        cls,
        sdk: Any,
        bus: Any,
        guard: SdkGuard,
        config: BenchConfig,
        clock: Clock,
        handles: tuple[dict[str, Any], dict[str, Any]],
    ) -> "CetoniBus":
        pump_handles, valve_handles = handles
        guard.transport(bus.start)
        for name, handle in pump_handles.items():
            guard.device(name, handle.clear_fault)
            guard.device(name, handle.enable, True)
        _calibrate(pump_handles, guard, clock, config)
        poll = config.settings.poll_interval
        pumps = {}
        for name, handle in pump_handles.items():
            syringe = config.syringe_of(name)
            _configure_pump(sdk, guard, name, handle, syringe)
            pumps[name] = CetoniPump(name, handle, syringe, clock, guard, poll)
        valves = {}
        for name, handle in valve_handles.items():
            count = _position_count(guard, config, name, handle)
            valves[name] = CetoniValve(name, handle, count, clock, guard, poll)
        logger.info("CETONI bus up: pumps %s, valves %s", sorted(pumps), sorted(valves))
        return cls(sdk, bus, guard, pumps, valves)

    def stop_all(self) -> None:
        """Stop every pump on the bus (``Pump.stop_all_pumps()``).

        Raises:
            DeviceError: the SDK call failed.
        """
        self._guard.device(BUS_DEVICE, self._sdk.qmixpump.Pump.stop_all_pumps)

    def close(self) -> None:
        """Stop all pumps, stop and close the bus (idempotent; failures are logged)."""
        if self._closed:
            return
        self._closed = True
        _shutdown(self._sdk, self._bus)

    def __enter__(self) -> "CetoniBus":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- start-up steps
def _lookup_devices(sdk: Any, config: BenchConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Bind an SDK handle per pump and per CETONI valve; every failure becomes a Problem."""
    problems: list[Problem] = []
    wanted = [("pump", p.name, p.device, sdk.qmixpump.Pump) for p in config.pumps]
    wanted += [
        ("valve", v.name, v.device, sdk.qmixvalve.Valve)
        for v in config.valves
        if v.driver == "cetoni"
    ]
    found: dict[str, dict[str, Any]] = {"pump": {}, "valve": {}}
    for kind, name, device, factory in wanted:
        if not device:
            problems.append(Problem("bench.toml", None, f"{kind} {name}: no CETONI device name"))
            continue
        handle = factory()
        try:
            handle.lookup_by_name(device)
        except sdk.qmixbus.DeviceError as exc:
            reason = f"{kind} {name}: device {device!r} not found by the SDK ({exc})"
            problems.append(Problem("bench.toml", None, reason))
            continue
        found[kind][name] = handle
    if problems:
        raise ConfigError(problems)
    return found["pump"], found["valve"]


def _calibrate(
    handles: Mapping[str, Any], guard: SdkGuard, clock: Clock, config: BenchConfig
) -> None:
    """Start every calibration, then poll until all have finished.

    Raises:
        TransportTimeout: not finished within ``config.cetoni.calibration_timeout`` s.
        DeviceFault: a drive faulted while calibrating.
    """
    timeout = config.cetoni.calibration_timeout
    for name, handle in handles.items():
        guard.motion(name, handle.calibrate)
    pending = dict(handles)

    def all_finished() -> bool:
        for name, handle in list(pending.items()):
            if guard.device(name, handle.is_in_fault_state):
                raise DeviceFault(name, Cause.DRIVE_FAULT, "pump faulted during calibration")
            if guard.device(name, handle.is_calibration_finished):
                del pending[name]
        return not pending

    try:
        poll_until(clock, all_finished, timeout, "calibration", config.settings.poll_interval,
                   device=BUS_DEVICE)
    except WaitTimeout as exc:
        raise TransportTimeout(
            ", ".join(sorted(pending)), f"calibration did not finish within {timeout:g} s"
        ) from exc


def _configure_pump(sdk: Any, guard: SdkGuard, name: str, handle: Any, syringe: Syringe) -> None:
    """Set syringe parameters and read them back; set units mL and mL/s and check them.

    The units are named explicitly (``UnitPrefix.milli`` litres, ``TimeUnit.per_second``) and
    verified by reading V_max and the maximum flow back against the configured syringe.

    Raises:
        DeviceError: cause "syringe mismatch" if ``get_syringe_param()`` does not return what
            was set; cause "unit mismatch" if the SDK's V_max (mL) disagrees with the syringe
            by more than 0.1 %, or its maximum flow is off by more than a factor
            :data:`FLOW_UNIT_SLACK` (a wrong time or volume unit is a factor ≥ 10; a drive
            with another gear only logs a warning).
    """
    guard.device(name, handle.set_syringe_param, syringe.inner_diameter, syringe.stroke)
    _check_syringe_param(name, guard.query(name, handle.get_syringe_param), syringe)
    milli, litres = sdk.qmixbus.UnitPrefix.milli, sdk.qmixpump.VolumeUnit.litres
    guard.device(name, handle.set_volume_unit, milli, litres)
    guard.device(name, handle.set_flow_unit, milli, litres, sdk.qmixbus.TimeUnit.per_second)
    volume = float(guard.query(name, handle.get_volume_max))
    if abs(volume - syringe.volume) > UNIT_CHECK_TOLERANCE * syringe.volume:
        raise DeviceError(
            name,
            Cause.UNIT_MISMATCH,
            f"SDK reports V_max {volume:g} mL, syringe {syringe.name} is {syringe.volume:g} mL",
        )
    flow = float(guard.query(name, handle.get_flow_rate_max))
    ratio = flow / syringe.max_flow
    if not 1 / FLOW_UNIT_SLACK <= ratio <= FLOW_UNIT_SLACK:
        raise DeviceError(
            name,
            Cause.UNIT_MISMATCH,
            f"SDK reports maximum flow {flow:g} mL/s, syringe {syringe.name} allows "
            f"{syringe.max_flow:g} mL/s: the flow unit is not mL/s",
        )
    if abs(ratio - 1) > UNIT_CHECK_TOLERANCE:
        logger.warning("%s: drive maximum flow %g mL/s differs from the configured %g mL/s",
                       name, flow, syringe.max_flow)


def _check_syringe_param(name: str, param: Any, syringe: Syringe) -> None:
    """Compare ``get_syringe_param()`` (``inner_diameter_mm``, ``max_piston_stroke_mm``, mm)
    with the configured syringe; DeviceError cause "syringe mismatch" if they differ."""
    got = (float(param.inner_diameter_mm), float(param.max_piston_stroke_mm))
    want = (syringe.inner_diameter, syringe.stroke)
    if any(abs(g - w) > UNIT_CHECK_TOLERANCE * w for g, w in zip(got, want, strict=True)):
        raise DeviceError(
            name,
            Cause.SYRINGE_MISMATCH,
            f"drive holds syringe {got[0]:g} mm × {got[1]:g} mm, configured "
            f"{want[0]:g} mm × {want[1]:g} mm ({syringe.name})",
        )


def _position_count(guard: SdkGuard, config: BenchConfig, name: str, handle: Any) -> int:
    """The valve's position count; ConfigError if the configuration uses more positions."""
    count = int(guard.device(name, handle.number_of_valve_positions))
    highest = max(config.valve(name).positions.values(), default=-1)
    if highest >= count:
        reason = f"valve {name}: position {highest} configured, the device has {count}"
        raise ConfigError([Problem("bench.toml", None, reason)])
    return count


def _shutdown(sdk: Any, bus: Any, started: bool = True) -> None:
    """Best-effort stop of all pumps (if the bus was started), stop and close the bus.

    Failures are logged, not raised, so that every step is tried.
    """
    steps: list[tuple[str, Callable[[], Any]]] = [("close bus", bus.close)]
    if started:
        steps[:0] = [("stop all pumps", sdk.qmixpump.Pump.stop_all_pumps), ("stop bus", bus.stop)]
    for what, step in steps:
        try:
            step()
        except sdk.qmixbus.DeviceError as exc:
            logger.warning("CETONI shutdown: %s failed: %s", what, exc)
