"""What a step does to the bench ledger: liquid moved along routes in plug flow
(:mod:`asab.ledger.liquid`). The planner applies each step to a copy of the ledger as it
plans (so it knows syringe levels and line contents at every step); the executor applies each
step to the real ledger once the drivers have done it.

Pure functions over a :class:`~asab.ledger.BenchLedger` (changed in place) and the bench
configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from asab.config import BenchConfig
from asab.ledger.liquid import (
    GAS,
    UNKNOWN,
    Parcel,
    add,
    draw_from_vessel,
    liquid,
    merge_streams,
    normalise,
    take_from_syringe,
    through,
)
from asab.ledger.model import BenchLedger, LedgerChange, VesselKind
from asab.ledger.residue import Cohort, ResidueModel
from asab.plan.steps import Dispense, Fill, ForgetLines, PlannedRoute, Step


@dataclass(frozen=True)
class Edges:
    """Edge label → (start node, end node, dead volume mL) of a bench's tubing, and the
    bench's residue model (None: plug flow only, no films or pockets)."""

    table: dict[str, tuple[str, str, float]]
    residue: ResidueModel | None = None

    @classmethod
    def of(cls, config: BenchConfig, *, residue: bool = True) -> Edges:
        key = (id(config), residue)
        hit = _EDGES.get(key)
        if hit is None or hit[0] is not config:
            hit = (config, cls({e.label: (e.start, e.end, e.dead_volume)
                                for e in config.tubing.edges},
                               ResidueModel(config) if residue else None))
            _EDGES[key] = hit
        return hit[1]


_EDGES: dict[tuple[int, bool], tuple[BenchConfig, Edges]] = {}
"""Edges per configuration object (the residue model is built once per bench)."""


def _flow_along(ledger: BenchLedger, edges: Edges, route: PlannedRoute,
                incoming: Sequence[Parcel], first: int = 0, last: int | None = None,
                flow: float = 0.0) -> list[Parcel]:
    """Push ``incoming`` at ``flow`` mL/s through ``route.edges[first:last]`` in flow order;
    returns what leaves the last of them."""
    stream = list(incoming)
    stop = len(route.edges) if last is None else last
    for i in range(first, stop):
        label = route.edges[i]
        if label not in edges.table:  # a valve channel: no volume of its own
            continue
        start, _end, volume = edges.table[label]
        forward = route.nodes[i] == start
        held = ledger.line(label)
        segment = held if forward else list(reversed(held))
        if edges.residue is not None and label in edges.residue.walls:
            kept, layer, pocket, stream = edges.residue.through(
                label, segment, ledger.film(label), ledger.pockets.get(label, {}), stream, flow)
            ledger.set_film(label, layer)
            if pocket:
                ledger.pockets[label] = pocket
        else:
            kept, stream = through(segment, volume, stream)
        ledger.set_line(label, kept if forward else list(reversed(kept)))
    return stream


def _in_order(content: dict[str, float], gas_first: bool) -> list[Parcel]:
    """``content`` as parcels in flow order: its gas, then its liquid (a syringe, gas at its
    outlet), or its liquid, then air (a vessel drawn dry)."""
    gas = Parcel.of({GAS: content[GAS]}) if content.get(GAS, 0.0) > 0 else None
    liq = Parcel.of(liquid(content))
    ordered = [gas, liq] if gas_first else [liq, gas]
    return [p for p in ordered if p is not None]


def _receive(ledger: BenchLedger, node: str, parcels: Sequence[Parcel]) -> None:
    """The liquid of ``parcels`` stays in vessel ``node`` (if it is one); gas vents."""
    vessel = ledger.vessels.get(node)
    if vessel is None or vessel.kind is VesselKind.GAS:
        return
    content = dict(vessel.content)
    for p in parcels:
        content = add(content, liquid(p.content()))
    vessel.content = content


def apply_fill(ledger: BenchLedger, edges: Edges, step: Fill, volume: float | None = None) -> None:
    """Aspirate ``volume`` mL (default the step's) from the step's source into its syringe."""
    volume = step.volume if volume is None else volume
    if volume <= 0:
        return
    vessel = ledger.vessels.get(step.source)
    gas_supply = vessel is None or vessel.kind is VesselKind.GAS
    drawn, left = draw_from_vessel({} if vessel is None else vessel.content, volume,
                                   gas_supply=gas_supply)
    if vessel is not None and not gas_supply:
        vessel.content = left
    out = _flow_along(ledger, edges, step.route, _in_order(drawn, gas_first=False),
                      flow=step.flow)
    syringe = ledger.syringes[step.pump]
    content = dict(syringe.content)
    for p in out:
        content = add(content, p.content())
    syringe.content = content


def apply_dispense(ledger: BenchLedger, edges: Edges, step: Dispense,
                   moved: dict[str, float] | None = None) -> None:
    """Dispense each move of the step (or only ``moved[pump]`` mL of it, after a failure):
    each pump's stream runs along its own route up to where the routes join, the streams
    merge, and the merged stream runs on to the sink, whose vessel keeps its liquid."""
    routes = [m.route for m in step.moves]
    join = _common_tail_start(routes)
    streams = []
    for move, route in zip(step.moves, routes):
        syringe = ledger.syringes[move.pump]
        volume = move.volume if moved is None else moved.get(move.pump, 0.0)
        out, left = take_from_syringe(syringe.content, volume)
        syringe.content = left
        if move.factor != 1.0:  # the syringe's levels are nominal; the plunger really moves
            out = {k: v * move.factor for k, v in out.items()}  # factor × that into the line
        streams.append(_flow_along(ledger, edges, route, _in_order(out, gas_first=True),
                                   last=len(route.edges) - join, flow=move.flow))
    merged = merge_streams(streams)
    tail = routes[0]
    out = _flow_along(ledger, edges, tail, merged, first=len(tail.edges) - join,
                      flow=sum(m.flow for m in step.moves))
    _receive(ledger, tail.nodes[-1], out)


def _common_tail_start(routes: Sequence[PlannedRoute]) -> int:
    """Number of trailing edges every route shares (where the streams have merged)."""
    n = 0
    shortest = min(len(r.edges) for r in routes)
    while n < shortest and len({r.edges[len(r.edges) - 1 - n] for r in routes}) == 1:
        n += 1
    return n


def forget_lines(ledger: BenchLedger, edges: Edges) -> None:
    """The liquid in every line and syringe is of unknown origin from now on; gas stays gas
    (volumes kept), so the wastes are not charged liquid that is not there."""
    for label, (_s, _e, volume) in edges.table.items():
        if volume <= 0:
            continue
        parcels = []
        for p in ledger.line(label):
            shares = dict(p.shares)
            gas = shares.get(GAS, 0.0)
            mixed = {k: v for k, v in ((GAS, gas), (UNKNOWN, 1.0 - gas)) if v > 1e-12}
            parcels.append(Parcel(p.volume, tuple(sorted(mixed.items()))))
        ledger.set_line(label, normalise(parcels))
        layer = ledger.film(label)
        if layer:
            ledger.set_film(label, [Cohort(c.volume, ((UNKNOWN, 1.0),), c.stage) for c in layer])
        if label in ledger.pockets:
            ledger.pockets[label] = {UNKNOWN: sum(ledger.pockets[label].values())}
    for syringe in ledger.syringes.values():
        v = sum(syringe.content.values())
        gas = syringe.content.get(GAS, 0.0)
        syringe.content = {k: x for k, x in {GAS: gas, UNKNOWN: v - gas}.items() if x > 1e-12}
    ledger.note(LedgerChange.LINES_UNKNOWN, "lines", "what the lines hold is unknown now")


def apply_step(ledger: BenchLedger, edges: Edges, step: Step) -> None:
    """Apply the whole of ``step`` to ``ledger`` (steps that move no liquid change nothing)."""
    if isinstance(step, Fill):
        apply_fill(ledger, edges, step)
    elif isinstance(step, Dispense):
        apply_dispense(ledger, edges, step)
    elif isinstance(step, ForgetLines):
        forget_lines(ledger, edges)


def holds_only(ledger: BenchLedger, edges: Edges, route: PlannedRoute, origin: str,
               skip_first: int = 0, skip_last: int = 0, purity: float = 0.99) -> bool:
    """Whether every segment of ``route.edges[skip_first:len−skip_last]`` (with a volume) holds
    at least ``purity`` of ``origin`` by volume."""
    labels = route.edges[skip_first:len(route.edges) - skip_last]
    for label in labels:
        if label not in edges.table or edges.table[label][2] <= 0:
            continue
        parcels = ledger.line(label)
        volume = sum(p.volume for p in parcels)
        share = sum(p.volume * dict(p.shares).get(origin, 0.0) for p in parcels)
        if volume <= 0 or share < purity * volume:
            return False
    return True
