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

import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from asab.clock import Clock
from asab.config.models import BenchConfig, Syringe
from asab.errors import (
    ConfigError,
    DeviceError,
    DeviceFault,
    Problem,
    TransportTimeout,
)

from asab.drivers.cetoni_devices import (
    BUS_DEVICE,
    UNIT_CHECK_TOLERANCE,
    CetoniPump,
    CetoniValve,
    SdkGuard,
    load_vendor_sdk,
)

logger = logging.getLogger(__name__)


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
        self.pumps = pumps
        self.valves = valves
        self._closed = False

    @classmethod
    def open(cls, config: BenchConfig, clock: Clock, sdk: Any = None) -> "CetoniBus":
        """Open the bus and bring every CETONI device up in the documented start-up order.

        Calibration runs the drives to their reference position (on real hardware this can
        move liquid) and is bounded by ``config.cetoni.calibration_timeout``.

        Args:
            config: the bench; uses ``cetoni``, ``pumps``, ``valves``, ``syringes``, ``settings``.
            clock: every wait is polled on it every ``settings.poll_interval`` s.
            sdk: namespace with ``qmixbus``, ``qmixpump``, ``qmixvalve``; default: the vendor's.

        Raises:
            TransportError: SDK missing, or the bus cannot be opened or started.
            ConfigError: a device name is missing or unknown to the SDK, or a valve has fewer
                positions than configured (all such problems listed).
            TransportTimeout: a calibration did not finish in time.
            DeviceError / DeviceFault: a device refused a start-up step.
        """
        sdk = sdk if sdk is not None else load_vendor_sdk()
        logger.warning("asab.drivers.cetoni has not yet been checked on real CETONI hardware")
        bus = sdk.qmixbus.Bus()
        guard = SdkGuard(sdk, bus)
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
        guard.device(name, handle.calibrate)
    pending = dict(handles)
    deadline = clock.now() + timeout
    while True:
        for name, handle in list(pending.items()):
            if guard.device(name, handle.is_in_fault_state):
                raise DeviceFault(name, "drive fault", "pump faulted during calibration")
            if guard.device(name, handle.is_calibration_finished):
                del pending[name]
        remaining = deadline - clock.now()
        if not pending:
            return
        if remaining <= 0:
            raise TransportTimeout(
                ", ".join(sorted(pending)), f"calibration did not finish within {timeout:g} s"
            )
        clock.sleep(min(config.settings.poll_interval, remaining))


def _configure_pump(sdk: Any, guard: SdkGuard, name: str, handle: Any, syringe: Syringe) -> None:
    """Set syringe parameters, then units mL and mL/s; cross-check V_max against the config.

    Raises:
        DeviceError: cause "unit mismatch" if the SDK's V_max (mL) disagrees with the syringe.
    """
    guard.device(name, handle.set_syringe_param, syringe.inner_diameter, syringe.stroke)
    milli, litres = sdk.qmixbus.UnitPrefix.milli, sdk.qmixpump.VolumeUnit.litres
    guard.device(name, handle.set_volume_unit, milli, litres)
    guard.device(name, handle.set_flow_unit, milli, litres, sdk.qmixbus.TimeUnit.per_second)
    reported = float(guard.device(name, handle.get_volume_max))
    if abs(reported - syringe.volume) > UNIT_CHECK_TOLERANCE * syringe.volume:
        raise DeviceError(
            name,
            "unit mismatch",
            f"SDK reports V_max {reported:g} mL, syringe {syringe.name} is {syringe.volume:g} mL",
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
