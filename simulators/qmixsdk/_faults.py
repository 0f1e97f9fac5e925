"""Fault injection into the stand-in ``qmixsdk`` (catalogue: :mod:`simulators.faults`).

Faults of the drive electronics live here (a device that does not reply, a drive busy with a
foreign operation, a valve that switches slowly); physical faults (a plunger overload, a stuck
valve) are the world's and are forwarded to :meth:`simulators.world.World.inject`.
"""

from __future__ import annotations

import math
from typing import Any

from simulators.qmixsdk._core import Context

BUSY_DURATION = 60.0
"""s a drive stays busy by default (a foreign move or calibration of about a minute)."""

SLOW_DELAY = 30.0
"""s added to every valve switch by default: beyond the driver's 10 s switch timeout."""

_PUMP = {"no_reply": {"calls"}, "busy": {"duration"}, "overload": {"after"}}
_VALVE = {"no_reply": {"calls"}, "slow": {"delay"}, "stuck": set()}


def inject(ctx: Context, name: str, kind: str, **params: float) -> None:
    """Inject ``kind`` into the pump or valve ``name`` (SDK device name or world name).

    Kinds and parameters:
        pumps: ``no_reply`` (``calls``: SDK calls that fail with NO_REPLY, default all),
        ``busy`` (``duration`` s the drive reports pumping and refuses moves; ended by a stop),
        ``overload`` (``after``: mL dosed before the drive faults; world fault);
        valves: ``no_reply`` (``calls``), ``slow`` (``delay`` s added to every switch, default
        30 s; ``math.inf`` never arrives), ``stuck`` (world fault: the valve never moves).

    Raises:
        KeyError: no such pump or valve. ValueError: unknown kind or parameter.
    """
    with ctx.lock:
        state, table = _find(ctx, name)
        if kind not in table:
            raise ValueError(f"{name}: unknown fault {kind!r} (known: {sorted(table)})")
        if set(params) - table[kind]:
            raise ValueError(f"fault {kind!r} takes {sorted(table[kind])}, got {sorted(params)}")
        world_name = getattr(state, "pump", None) or state.valve
        if kind == "no_reply":
            calls = params.get("calls", -1)
            state.no_reply = -1 if calls is None or calls < 0 or math.isinf(calls) else int(calls)
        elif kind == "busy":
            state.busy_until = ctx.now() + float(params.get("duration", BUSY_DURATION))
        elif kind == "slow":
            state.delay = float(params.get("delay", SLOW_DELAY))
        else:
            ctx.world.inject(world_name, kind, **params)


def clear_faults(ctx: Context) -> None:
    """Remove every injected drive fault (the world's faults are cleared by the world)."""
    with ctx.lock:
        for pump in ctx.pumps.values():
            pump.no_reply, pump.busy_until = 0, 0.0
        for valve in ctx.valves.values():
            valve.no_reply, valve.delay = 0, 0.0


def _find(ctx: Context, name: str) -> tuple[Any, dict[str, set[str]]]:
    for states, table in ((ctx.pumps, _PUMP), (ctx.valves, _VALVE)):
        for device, state in states.items():
            if name in (device, getattr(state, "pump", None), getattr(state, "valve", None)):
                return state, table
    raise KeyError(f"no CETONI pump or valve named {name!r}")
