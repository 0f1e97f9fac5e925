"""``qmixvalve.Valve`` of the stand-in ``qmixsdk``.

A switch takes ``Context.valve_switch_time`` s of clock time (about 0.5 s, the order of a
Qmix V rotary valve's port-to-port time); until then ``actual_valve_position`` reports the old
position. The new position is written to the world when the time has passed (on a clock step,
or lazily on the next read). A valve the world lists as ``"stuck"`` in ``world.faults`` never
arrives; an injected ``delay`` (fault ``"slow"``) adds to every switch.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import ClassVar

from simulators.qmixsdk._core import Context, ErrorCode


@dataclass
class ValveState:
    """One valve device: its world name, position count and a pending switch."""

    ctx: Context
    device: str
    valve: str
    count: int
    target: int | None = None
    arrive_at: float = 0.0
    delay: float = 0.0
    no_reply: int = 0

    def settle(self, now: float) -> None:
        """Complete a pending switch whose time has come."""
        if self.target is None or now < self.arrive_at - 1e-12:
            return
        target, self.target = self.target, None
        if self.ctx.world.faults.get(self.valve) != "stuck":
            self.ctx.world.set_valve(self.valve, target)

    def position(self) -> int:
        self.settle(self.ctx.now())
        return int(self.ctx.world.valve_position(self.valve))


class ValveBase:
    """``qmixvalve.Valve``: a handle to one valve device; bind it with a ``lookup_*`` call."""

    _ctx: ClassVar[Context]

    def __init__(self) -> None:
        self._state: ValveState | None = None

    @classmethod
    def get_no_of_valves(cls) -> int:
        """Number of valve devices in the device configuration."""
        with cls._ctx.lock:
            cls._ctx.require_open()
            return len(cls._ctx.valves)

    def lookup_by_name(self, name: str) -> None:
        """Bind this handle to valve device ``name``. Raises DeviceError if unknown."""
        with self._ctx.lock:
            self._ctx.require_open(name)
            if name not in self._ctx.valves:
                self._ctx.fail(ErrorCode.NO_SUCH_DEVICE, name)
            self._state = self._ctx.valves[name]

    def lookup_by_device_index(self, index: int) -> None:
        """Bind this handle to the ``index``-th valve (0-based, configuration order)."""
        with self._ctx.lock:
            self._ctx.require_open()
            names = list(self._ctx.valves)
            if not 0 <= index < len(names):
                self._ctx.fail(ErrorCode.NO_SUCH_DEVICE, detail=f"valve index {index}")
            self._state = self._ctx.valves[names[index]]

    def _dev(self) -> ValveState:
        if self._state is None:
            self._ctx.fail(ErrorCode.NOT_BOUND)
        self._ctx.require_started(self._state.device)
        self._ctx.check_reply(self._state.device, self._state)
        return self._state

    def number_of_valve_positions(self) -> int:
        with self._ctx.lock:
            return self._dev().count

    def actual_valve_position(self) -> int:
        """Logical position 0 … n−1 the valve is at now (the old one while switching)."""
        with self._ctx.lock:
            return self._dev().position()

    def switch_valve_to_position(self, position: int) -> None:
        """Start switching to logical ``position`` (0 … n−1); returns at once."""
        with self._ctx.lock:
            s = self._dev()
            try:
                pos = operator.index(position)
            except TypeError:
                s.ctx.fail(ErrorCode.INVALID_PARAMETER, s.device, f"{position!r}")
            if not 0 <= pos < s.count:
                s.ctx.fail(ErrorCode.POSITION_OUT_OF_RANGE, s.device, f"{pos} of {s.count}")
            s.settle(s.ctx.now())
            s.target, s.arrive_at = pos, s.ctx.now() + s.ctx.valve_switch_time + s.delay
