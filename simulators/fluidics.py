"""Plug-flow mechanics of the simulated world: tube segments, open vessels, route tracing.

A :class:`Segment` is one tubing edge holding an ordered sequence of parcels
(:class:`~simulators.liquid.Liquid`) that fills its dead volume: pushing a volume in at one end
pushes the same volume out of the other end (plug flow, shared/docs/electrolyte_models.md,
"Carry-over"). A :class:`Vessel` is an open end (reservoir, solvent bottle, gas supply, waste,
vial) that receives liquid and vents gas, and yields liquid first, then air, when drawn from.
:func:`trace_route` follows the open arcs of the tubing graph from a syringe outlet to a vessel.

All volumes are mL, masses g, amounts mol.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from simulators.liquid import Liquid

Direction = Literal["aspirate", "dispense"]

MERGE_VOLUME = 0.005
"""mL; a parcel entering a segment merges into the parcel at that end while the latter is
smaller than this (bounds memory, acts as axial mixing on the 5 µL scale)."""

_EPS = 1e-15
"""mL; absolute tolerance when a parcel is popped whole instead of split."""


def total(parcels: Iterable[Liquid]) -> Liquid:
    """Sum parcels into one new :class:`Liquid` (the inputs are not modified)."""
    out = Liquid()
    for p in parcels:
        out.add(p)
    return out


def add_liquid_only(target: Liquid, parcel: Liquid) -> float:
    """Add the liquid part of ``parcel`` to ``target`` and return its gas volume (mL)."""
    for k, n in parcel.moles.items():
        target.moles[k] = target.moles.get(k, 0.0) + n
    target.volume += parcel.volume
    target.mass += parcel.mass
    return parcel.gas


def take_liquid(source: Liquid, volume: float) -> Liquid:
    """Remove up to ``volume`` mL of liquid (never gas) from ``source`` and return it.

    The composition of the removed liquid is that of ``source`` (well mixed).
    """
    if volume <= 0 or source.volume <= 0:
        return Liquid()
    if volume >= source.volume - _EPS:
        out = Liquid(dict(source.moles), source.volume, source.mass, 0.0)
        source.moles = {k: 0.0 for k in source.moles}
        source.volume = 0.0
        source.mass = 0.0
        return out
    f = volume / source.volume
    out = Liquid({k: n * f for k, n in source.moles.items()}, volume, source.mass * f, 0.0)
    for k in source.moles:
        source.moles[k] *= 1.0 - f
    source.volume -= volume
    source.mass *= 1.0 - f
    return out


def take_gas_first(source: Liquid, volume: float) -> Liquid:
    """Remove ``volume`` mL from a syringe, gas first, then liquid.

    Models a syringe mounted outlet-up (neMESYS modules): bubbles collect at the outlet and
    leave first. Returns at most what ``source`` holds.
    """
    gas = min(source.gas, max(volume, 0.0))
    source.gas -= gas
    out = take_liquid(source, volume - gas)
    out.gas = gas
    return out


class Segment:
    """One tube or channel holding parcels in plug flow.

    Parcels are stored from the edge's ``start`` (left) to its ``end`` (right).

    Args:
        label: edge label.
        start: start node.
        end: end node.
        capacity: dead volume in mL (≥ 0).
        merge_volume: see :data:`MERGE_VOLUME`.
        fill: initial content (default: air filling the dead volume).
    """

    def __init__(
        self,
        label: str,
        start: str,
        end: str,
        capacity: float,
        merge_volume: float = MERGE_VOLUME,
        fill: Liquid | None = None,
    ) -> None:
        self.label = label
        self.start = start
        self.end = end
        self.capacity = float(capacity)
        self.merge_volume = merge_volume
        self.parcels: deque[Liquid] = deque()
        if self.capacity > 0:
            self.parcels.append(fill if fill is not None else Liquid(gas=self.capacity))
        # per entry end (True = start): (tick, source, parcels made) of the last push there
        self._head: dict[bool, tuple[int, str, int]] = {True: (-1, "", 0), False: (-1, "", 0)}

    def push(
        self, incoming: Sequence[Liquid], at_start: bool, key: tuple[int, str]
    ) -> list[Liquid]:
        """Push parcels in at one end; return what leaves the other end (same total volume).

        Args:
            incoming: parcels in the order they arrive (first arrives first); ownership passes
                to the segment.
            at_start: True to enter at ``start`` (flow start → end), False for end → start.
            key: ``(tick, source)`` of this push. When a different source pushes in at the
                same end within the same tick, the parcels the first source made there this
                tick and everything that follows merge into one: streams meeting at a
                confluence mix per tick. One source's own parcels stay apart (sharp fronts).

        Returns:
            Parcels leaving the opposite end, in the order they leave.
        """
        volume = sum(p.total_volume for p in incoming)
        if volume <= 0:
            return []
        if self.capacity <= 0:
            return list(incoming)
        for p in incoming:
            self._enter(p, at_start, key)
        return self._leave(volume, exit_at_end=at_start)

    def contents(self) -> Liquid:
        """Everything the segment holds, as one new parcel."""
        return total(self.parcels)

    def _enter(self, parcel: Liquid, at_start: bool, key: tuple[int, str]) -> None:
        q = self.parcels
        tick, source, count = self._head[at_start]
        confluence = tick == key[0] and source != key[1]
        if confluence:
            if count > 1:
                self._coalesce(at_start, min(count, len(q)))
                self._head[at_start] = (tick, source, 1)
            if q:
                (q[0] if at_start else q[-1]).add(parcel)
                return
        same_push = tick == key[0] and source == key[1]
        head = (q[0] if at_start else q[-1]) if q else None
        if head is not None and head.total_volume < self.merge_volume:
            head.add(parcel)
            if not same_push:
                self._head[at_start] = (key[0], key[1], 1)
            return
        if at_start:
            q.appendleft(parcel)
        else:
            q.append(parcel)
        self._head[at_start] = (key[0], key[1], count + 1 if same_push else 1)

    def _coalesce(self, at_start: bool, n: int) -> None:
        """Merge the ``n`` parcels at one end into one (a confluence mixes this tick's inflow)."""
        q = self.parcels
        parts = [q.popleft() if at_start else q.pop() for _ in range(n)]
        merged = total(parts)
        if at_start:
            q.appendleft(merged)
        else:
            q.append(merged)

    def _leave(self, volume: float, exit_at_end: bool) -> list[Liquid]:
        q = self.parcels
        out: list[Liquid] = []
        remaining = volume
        while remaining > 0 and q:
            p = q[-1] if exit_at_end else q[0]
            tv = p.total_volume
            if tv <= remaining + _EPS:
                if exit_at_end:
                    q.pop()
                else:
                    q.popleft()
                out.append(p)
                remaining -= tv
                self._head[not exit_at_end] = (-1, "", 0)
            else:
                out.append(p.take(remaining))
                remaining = 0.0
        return out


class Vessel:
    """An open end: holds liquid (unbounded), vents gas, yields air when empty.

    Args:
        name: tubing node.
        content: initial liquid (gas is ignored).
        kind: "stock", "solvent", "gas", "waste" or "vial" (informational).
    """

    def __init__(self, name: str, content: Liquid | None = None, kind: str = "waste") -> None:
        self.name = name
        self.kind = kind
        self.content = Liquid()
        if content is not None:
            add_liquid_only(self.content, content)

    def receive(self, parcels: Iterable[Liquid]) -> float:
        """Add the liquid of ``parcels``; return the gas volume vented to the room (mL)."""
        return sum(add_liquid_only(self.content, p) for p in parcels)

    def draw(self, volume: float) -> Liquid:
        """Draw ``volume`` mL: the vessel's liquid first, air for the remainder.

        The returned parcel's ``gas`` is air that entered the world from outside.
        """
        out = take_liquid(self.content, volume)
        out.gas = max(0.0, volume - out.volume)
        return out


@dataclass(frozen=True)
class Route:
    """An open path between a syringe and a vessel, in the order liquid moves.

    Attributes:
        steps: ``(segment, at_start)`` per segment in flow order; ``at_start`` is True when
            liquid enters the segment at its ``start`` node.
        vessel: the vessel node at the open end.
    """

    steps: tuple[tuple[Segment, bool], ...]
    vessel: str


Adjacency = Mapping[str, Sequence[tuple[Segment, str, bool]]]
"""node → (segment, neighbour node, directed) for every segment touching the node."""


def trace_route(
    adjacency: Adjacency,
    pump_node: str,
    direction: Direction,
    is_open: Callable[[str], bool],
    vessels: Mapping[str, Vessel],
) -> Route | str:
    """Follow open arcs from ``pump_node`` to the first vessel.

    For a dispense, liquid moves away from the pump; for an aspirate, towards it (directed
    segments only pass liquid start → end). Every node on the way must offer exactly one
    onward open arc.

    Args:
        adjacency: see :data:`Adjacency`.
        pump_node: syringe outlet node.
        direction: "dispense" or "aspirate".
        is_open: segment label → whether it is open now (valve channels).
        vessels: open ends by node name.

    Returns:
        A :class:`Route` in flow order, or a string saying why there is none (dead end,
        ambiguous branch or loop).
    """
    node, came, visited = pump_node, "", {pump_node}
    hops: list[tuple[Segment, bool]] = []
    while node == pump_node or node not in vessels:
        arcs = [
            (seg, other)
            for seg, other, directed in adjacency.get(node, ())
            if seg.label != came and is_open(seg.label) and _passes(seg, directed, node, direction)
        ]
        if len(arcs) != 1:
            what = "dead end" if not arcs else "ambiguous branch"
            return f"{what} at {node}"
        seg, other = arcs[0]
        if other in visited:
            return f"loop at {other}"
        # dispense: liquid moves node → other; aspirate: other → node
        hops.append((seg, (seg.start == node) == (direction == "dispense")))
        visited.add(other)
        came, node = seg.label, other
    if direction == "aspirate":
        hops.reverse()
    return Route(tuple(hops), node)


def _passes(seg: Segment, directed: bool, node: str, direction: Direction) -> bool:
    """Whether liquid may cross ``seg`` in the sense the trace needs at ``node``."""
    if not directed:
        return True
    return seg.start == node if direction == "dispense" else seg.end == node
