"""A stand-in for CETONI's ``qmixsdk`` Python wrapper, backed by the simulated world.

:func:`make_qmixsdk` returns a namespace with ``qmixbus``, ``qmixpump`` and ``qmixvalve``
module-like objects that expose the surface documented in ``shared/docs/device_protocols.md``
(CETONI section), under the same names, and enforce the real start-up order: devices can be
looked up once the bus is open; every other device call needs ``Bus.start()``; pumps must be
enabled (after clearing any fault) and calibrated before they move; flows above the drive
limit and volumes beyond the syringe are refused. Motion is delegated to the world.

Nothing here is registered in ``sys.modules``: the composition root passes the namespace to
``asab.drivers.cetoni.CetoniBus.open(..., sdk=...)``.

Example::

    sdk = make_qmixsdk(world, clock, {"neMESYS_Low_Pressure_1_Pump": "A0.0"}, {"Qmix_V_1": "V1"})
    bus = sdk.qmixbus.Bus(); bus.open("cfg", ""); pump = sdk.qmixpump.Pump()
    pump.lookup_by_name("neMESYS_Low_Pressure_1_Pump"); bus.start(); ...
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from simulators.qmixsdk import _faults
from simulators.qmixsdk._core import (
    BusBase,
    Context,
    DeviceError,
    ErrorCode,
    Event,
    TimeUnit,
    UnitPrefix,
    VolumeUnit,
)
from simulators.qmixsdk._pump import PumpBase, PumpState, SyringeParam, valve_device_of
from simulators.qmixsdk._valve import ValveBase, ValveState

__all__ = [
    "DEFAULT_SYRINGE",
    "DeviceError",
    "ErrorCode",
    "make_qmixsdk",
    "make_qmixsdk_for_bench",
    "valve_device_of",
]

DEFAULT_SYRINGE: tuple[float, float] = (14.5673, 60.0)
"""(inner diameter mm, max piston stroke mm) of a 10 mL glass syringe (CETONI syringe table,
as assumed in ``hardware_configs/hiu_2023/bench.toml``)."""

DEFAULT_VALVE_POSITIONS = 10
"""Positions of a Qmix V 10-port rotary valve, used when no count is given for a valve."""


def make_qmixsdk(
    world: Any,
    clock: Any,
    pump_devices: Mapping[str, str],
    valve_devices: Mapping[str, str],
    syringe_defaults: tuple[float, float] | Mapping[str, tuple[float, float]] = DEFAULT_SYRINGE,
    *,
    valve_positions: Mapping[str, int] | None = None,
    calibration_time: float = 2.0,
    valve_switch_time: float = 0.5,
) -> SimpleNamespace:
    """Build one stand-in SDK over ``world``.

    Args:
        world: the simulated world (``simulators.world.World`` API; pumps and valves by name).
        clock: the clock driving the world (``now()``; ``add_listener`` used if present).
        pump_devices: SDK device name → world pump name (configuration order = device index).
        valve_devices: SDK device name → world valve name.
        syringe_defaults: (inner diameter mm, stroke mm) a drive holds before
            ``set_syringe_param``: one pair for all pumps, or pump device name → pair
            (missing devices get :data:`DEFAULT_SYRINGE`).
        valve_positions: valve device name → number of positions (default 10).
        calibration_time: s of clock time a pump calibration takes.
        valve_switch_time: s of clock time a valve switch takes.

    Returns:
        ``SimpleNamespace(qmixbus=..., qmixpump=..., qmixvalve=..., inject=..., clear_faults=...)``;
        ``inject(name, kind, **params)`` and ``clear_faults()`` are the fault-injection hooks
        of :mod:`simulators.qmixsdk._faults` (never used by a driver).
    """
    ctx = Context(
        world, clock, calibration_time=calibration_time, valve_switch_time=valve_switch_time
    )
    counts = dict(valve_positions or {})
    for device, pump in pump_devices.items():
        d, stroke = _syringe_for(device, syringe_defaults)
        ctx.pumps[device] = PumpState(ctx, device, pump, d, stroke)
    for device, valve in valve_devices.items():
        count = counts.get(device, DEFAULT_VALVE_POSITIONS)
        ctx.valves[device] = ValveState(ctx, device, valve, count)
    if hasattr(clock, "add_listener"):
        clock.add_listener(ctx.tick)
    bus_cls = type("Bus", (BusBase,), {"_ctx": ctx})
    valve_cls = type("Valve", (ValveBase,), {"_ctx": ctx})
    pump_cls = type("Pump", (PumpBase,), {"_ctx": ctx, "_valve_cls": valve_cls})
    qmixbus = SimpleNamespace(
        Bus=bus_cls, DeviceError=DeviceError, UnitPrefix=UnitPrefix, TimeUnit=TimeUnit, Event=Event
    )
    qmixpump = SimpleNamespace(Pump=pump_cls, VolumeUnit=VolumeUnit, SyringeParam=SyringeParam)
    qmixvalve = SimpleNamespace(Valve=valve_cls)
    return SimpleNamespace(
        qmixbus=qmixbus, qmixpump=qmixpump, qmixvalve=qmixvalve,
        inject=functools.partial(_faults.inject, ctx),
        clear_faults=functools.partial(_faults.clear_faults, ctx),
    )


def make_qmixsdk_for_bench(world: Any, clock: Any, config: Any, **kwargs: Any) -> SimpleNamespace:
    """:func:`make_qmixsdk` with every CETONI pump and valve of a ``BenchConfig``.

    Device names come from ``Pump.device`` / ``Valve.device`` (entries without one are left
    out), syringe defaults from the configured syringes, and each valve's position count is
    its largest configured position index + 1. ``kwargs`` go to :func:`make_qmixsdk`.
    """
    pumps = {p.device: p.name for p in config.pumps if p.device}
    valves = [v for v in config.valves if v.device and v.driver == "cetoni"]
    syringes = {}
    for p in config.pumps:
        if p.device:
            syringe = config.syringe(p.syringe)
            syringes[p.device] = (syringe.inner_diameter, syringe.stroke)
    counts = {v.device: max(v.positions.values(), default=-1) + 1 for v in valves}
    kwargs.setdefault("valve_positions", counts)
    return make_qmixsdk(world, clock, pumps, {v.device: v.name for v in valves}, syringes, **kwargs)


def _syringe_for(
    device: str, defaults: tuple[float, float] | Mapping[str, tuple[float, float]]
) -> tuple[float, float]:
    if isinstance(defaults, Mapping):
        return tuple(defaults.get(device, DEFAULT_SYRINGE))  # type: ignore[return-value]
    return defaults
