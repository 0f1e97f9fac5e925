"""The one physical world behind all simulators (shared/docs/architecture.md, principle 3).

Reservoirs, syringes, tube segments, the measuring cells, waste and vials hold liquid
(:class:`~simulators.liquid.Liquid`: amounts by InChIKey, volume, mass, gas). Moving a plunger
with the valves set moves liquid along the tubing graph in plug flow
(:mod:`simulators.fluidics`). Device simulators (the CETONI ``qmixsdk`` stand-in, the balance,
the densimeter) read and drive this world; a clock calls :meth:`World.advance`.

Tubes keep residues (:mod:`simulators.residue`): wall films left by gas pushes, washed out
gradually by the next liquid, unswept pockets, evaporation from films into passing gas.

Bookkeeping is exact: liquid (moles, mass, volume) is only moved, never made or lost, except
what evaporates (kept in :attr:`World.evaporated`). Air
enters when a syringe draws from an empty vessel or a gas supply (:attr:`World.gas_drawn`) and
leaves when it reaches a vessel (:attr:`World.gas_vented`), so
``totals().gas - gas_drawn + gas_vented`` is constant.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from asab.config.models import BenchConfig
from asab.errors import ConfigError
from simulators.fluidics import (
    MERGE_VOLUME,
    Direction,
    Route,
    Segment,
    Vessel,
    take_gas_first,
    take_liquid,
    total,
    trace_route,
)
from simulators.liquid import Liquid
from simulators.residue import Walls

logger = logging.getLogger(__name__)

SOLVENT_VOLUME = 500.0
"""mL of cleaning solvent in the solvent bottle at the start (a full bottle on the bench)."""

_SLACK = 1e-8
"""Relative slack (of the syringe volume) on the capacity and content checks."""


@dataclass(frozen=True)
class PumpStatus:
    """What a syringe pump reports.

    Attributes:
        fill_level: syringe content (liquid + gas) in mL.
        pumping: whether the plunger is moving.
        dosed_volume: mL moved since the last start (≥ 0).
        flow: mL/s, negative while aspirating, 0 when idle.
        target_volume: mL requested by the last start.
        fault: fault cause ("overpressure", "volume", or an injected cause) or None.
    """

    fill_level: float
    pumping: bool
    dosed_volume: float
    flow: float
    target_volume: float
    fault: str | None


class _Pump:
    """Mutable state of one pump (internal)."""

    def __init__(self, name: str, node: str, capacity: float) -> None:
        self.name = name
        self.node = node
        self.capacity = capacity
        self.syringe = Liquid()
        self.pumping = False
        self.direction: Direction = "dispense"
        self.flow = 0.0
        self.target = 0.0
        self.dosed = 0.0
        self.fault: str | None = None


class World:
    """Simulated liquid on the bench: vessels, syringes, tubing segments and valves.

    Args:
        config: the bench (layout, valves, pumps, syringes, stocks, settings).
        clock: optional clock with ``add_listener`` (``VirtualClock``/``RealTimeClock``);
            the world then advances itself on every clock step.
        solvent_volume: mL in the solvent bottle at the start.
        merge_volume: mL below which parcels merge (see ``fluidics.MERGE_VOLUME``).
        residues: keep wall films, pockets and evaporation (:mod:`simulators.residue`);
            False: plug flow only (every tube is swept clean by what passes).

    Attributes:
        faults: fault injection, e.g. ``{"V3": "stuck"}`` (a stuck valve ignores
            :meth:`set_valve`) or ``{"A0.0": "overload"}`` (the pump faults with that cause
            when started, or once it has dosed ``fault_after[pump]`` mL of a move). Prefer
            :meth:`inject` / :meth:`clear_faults`, which also handle ``"empty"`` vessels.
        fault_after: pump name → mL a move doses before an injected pump fault strikes
            (missing: at the start of the move).
        removed: liquid taken out of vessels by an injected ``"empty"`` fault (so that
            ``totals() + removed`` stays constant); put back by :meth:`clear_faults`.
        gas_drawn: mL of air that entered the world.
        gas_vented: mL of gas that left it into vessels.

    Raises:
        ConfigError: the solvent chemical has no density.
        KeyError: a stock names an unknown chemical or a pump an unknown syringe.
    """

    def __init__(
        self,
        config: BenchConfig,
        clock: Any = None,
        *,
        solvent_volume: float = SOLVENT_VOLUME,
        merge_volume: float = MERGE_VOLUME,
        residues: bool = True,
    ) -> None:
        self.config = config
        self.faults: dict[str, str] = {}
        self.fault_after: dict[str, float] = {}
        self.removed: dict[str, Liquid] = {}
        self.gas_drawn = 0.0
        self.gas_vented = 0.0
        self._lock = threading.RLock()
        self._tick = 0
        self._segments = {
            e.label: Segment(e.label, e.start, e.end, e.dead_volume, merge_volume)
            for e in config.tubing.edges
        }
        self._adjacency = self._build_adjacency()
        self._channels = self._build_channels()
        self._positions = {v.name: 0 for v in config.valves}
        self._vessels = self._build_vessels(solvent_volume)
        self._pumps = {
            p.name: _Pump(p.name, p.node, config.syringe_of(p.name).volume) for p in config.pumps
        }
        self._routes: dict[tuple[str, Direction], Route | str] = {}
        self.walls = Walls(config) if residues else None
        self._flows: dict[str, float] = {}
        if clock is not None:
            clock.add_listener(self._on_clock)

    # ------------------------------------------------------------------ construction
    def _build_adjacency(self) -> dict[str, list[tuple[Segment, str, bool]]]:
        adj: dict[str, list[tuple[Segment, str, bool]]] = {}
        for e in self.config.tubing.edges:
            seg = self._segments[e.label]
            adj.setdefault(e.start, []).append((seg, e.end, e.directed))
            adj.setdefault(e.end, []).append((seg, e.start, e.directed))
        return adj

    def _build_channels(self) -> dict[str, tuple[str, int]]:
        """Segment label → (valve, position) for every valve channel common↔port."""
        channels: dict[str, tuple[str, int]] = {}
        for v in self.config.valves:
            for port, position in v.positions.items():
                for seg, other, _ in self._adjacency.get(v.common, ()):
                    if other == port:
                        channels[seg.label] = (v.name, position)
        return channels

    def _layout_nodes(self) -> set[str]:
        nodes = {n.name for n in self.config.tubing.nodes}
        return nodes | set(self._adjacency)

    def _build_vessels(self, solvent_volume: float) -> dict[str, Vessel]:
        cfg, s = self.config, self.config.settings
        nodes = self._layout_nodes()
        vessels: dict[str, Vessel] = {}
        for stock in cfg.stocks:
            moles = {
                k: c.mass / cfg.chemical(k).molar_mass
                for k, c in stock.components.items()
                if c.mass > 0
            }
            liquid = Liquid(moles, stock.volume, stock.total_mass)
            vessels.setdefault(stock.reservoir, Vessel(stock.reservoir, liquid, "stock"))
        if s.solvent_node in nodes:
            solvent = self._solvent(solvent_volume)
            vessels.setdefault(s.solvent_node, Vessel(s.solvent_node, solvent, "solvent"))
        for kind, names in (("gas", s.gas_nodes), ("waste", s.waste_nodes), ("vial", s.vial_nodes)):
            for name in names:
                vessels.setdefault(name, Vessel(name, None, kind))
        return {name: v for name, v in vessels.items() if name in nodes}

    def _solvent(self, volume: float) -> Liquid:
        chem = self.config.chemical(self.config.settings.solvent_chemical)
        if chem.density is None:
            raise ConfigError(f"solvent chemical {chem.name} has no density")
        mass = volume * chem.density
        return Liquid({chem.inchikey: mass / chem.molar_mass}, volume, mass)

    # ------------------------------------------------------------------ from a ledger
    def load_ledger(self, ledger: Any) -> None:
        """Start from what a bench ledger (:class:`asab.ledger.BenchLedger`) says the bench
        holds: vessel contents, syringe contents and each segment's parcels (origins turned
        into liquid: a stock at its composition and density, the solvent as the solvent
        chemical; liquid of unknown origin is taken as solvent)."""
        with self._lock:
            for node, state in ledger.vessels.items():
                vessel = self._vessels.get(node)
                if vessel is not None and state.kind != "gas":
                    vessel.content = self._liquid_of(state.content)
            for pump, state in ledger.syringes.items():
                if pump in self._pumps:
                    self._pumps[pump].syringe = self._liquid_of(state.content)
            for label, parcels in ledger.lines.items():
                seg = self._segments.get(label)
                if seg is None or seg.capacity <= 0:
                    continue
                seg.parcels.clear()
                for p in parcels:
                    seg.parcels.append(self._liquid_of(
                        {k: f * p.volume for k, f in p.content.items()}))
                if self.walls is not None:
                    layer = [(self._liquid_of({k: f * c.volume for k, f in c.content.items()}),
                              c.stage) for c in getattr(ledger, "films", {}).get(label, [])]
                    pocket = self._liquid_of(getattr(ledger, "pockets", {}).get(label, {}))
                    self.walls.set_state(label, layer, pocket)

    def _liquid_of(self, content: dict[str, float]) -> Liquid:
        """Liquid for a ledger content (origin → mL; origin ``gas`` is gas)."""
        out = Liquid()
        stocks = {st.name: st for st in self.config.stocks}
        for origin, volume in content.items():
            if volume <= 0:
                continue
            if origin == "gas":
                out.gas += volume
            elif origin in stocks:
                st = stocks[origin]
                moles = {k: c.mass / self.config.chemical(k).molar_mass * volume / st.volume
                         for k, c in st.components.items() if c.mass > 0}
                out.add(Liquid(moles, volume, volume * st.density))
            else:
                out.add(self._solvent(volume))
        return out

    # ------------------------------------------------------------------ valves
    def set_valve(self, valve: str, position: int) -> None:
        """Switch ``valve`` to ``position`` at once (switching time is the device's business).

        A valve listed as ``"stuck"`` in :attr:`faults` keeps its position.

        Raises:
            KeyError: unknown valve.
            ValueError: the valve has no such position.
        """
        v = self.config.valve(valve)
        if position not in v.positions.values():
            raise ValueError(f"valve {valve} has no position {position}")
        with self._lock:
            if self.faults.get(valve) == "stuck":
                logger.warning("valve %s is stuck; ignoring switch to %d", valve, position)
                return
            if self._positions[valve] != position:
                self._positions[valve] = position
                self._routes.clear()

    def valve_position(self, valve: str) -> int:
        """Current position index of ``valve``. Raises KeyError for an unknown valve."""
        return self._positions[self.config.valve(valve).name]

    def _is_open(self, label: str) -> bool:
        channel = self._channels.get(label)
        return channel is None or self._positions[channel[0]] == channel[1]

    # ------------------------------------------------------------------ pumps
    def start_pump(
        self, pump: str, direction: Literal["aspirate", "dispense"], volume: float, flow: float
    ) -> None:
        """Start moving ``volume`` mL at ``flow`` mL/s; liquid moves on :meth:`advance`.

        A pump with a fault does not start (clear it with :meth:`clear_pump_fault`). Asking to
        aspirate beyond the syringe capacity or dispense beyond its content sets fault
        ``"volume"`` and nothing moves. A closed or ambiguous route shows as fault
        ``"overpressure"`` on the next :meth:`advance`.

        Raises:
            KeyError: unknown pump.
            ValueError: unknown direction, or volume/flow not > 0.
        """
        if direction not in ("aspirate", "dispense"):
            raise ValueError(f"unknown direction {direction!r}")
        if not (volume > 0 and flow > 0):
            raise ValueError(f"volume and flow must be > 0, got {volume} mL, {flow} mL/s")
        with self._lock:
            p = self._pump(pump)
            if p.fault is not None:
                logger.warning("pump %s has fault %r; not starting", pump, p.fault)
                return
            p.pumping, p.direction, p.flow, p.target, p.dosed = False, direction, flow, volume, 0.0
            fill, slack = p.syringe.total_volume, _SLACK * p.capacity
            if (direction == "aspirate" and fill + volume > p.capacity + slack) or (
                direction == "dispense" and volume > fill + slack
            ):
                self._fault(p, "volume")
                return
            if pump in self.faults and self.fault_after.get(pump, 0.0) <= 0.0:
                self._fault(p, self.faults[pump])
                return
            p.pumping = True
            logger.debug("pump %s: %s %.4g mL at %.4g mL/s", pump, direction, volume, flow)

    def stop_pump(self, pump: str) -> None:
        """Stop the plunger now (idempotent). Raises KeyError for an unknown pump."""
        with self._lock:
            p = self._pump(pump)
            p.pumping = False
            self._settle(p)

    def _settle(self, p: _Pump) -> None:
        """Apply the pending residue physics of the segments on ``p``'s route (only those:
        what other pumps move meanwhile does not change where this flow's batches end)."""
        if self.walls is None:
            return
        route = self._routes.get((p.name, p.direction))
        if route is not None and not isinstance(route, str):
            self.walls.flush(seg.label for seg, _ in route.steps)

    def clear_pump_fault(self, pump: str) -> None:
        """Clear the pump's fault (the pump stays stopped). Raises KeyError if unknown."""
        with self._lock:
            self._pump(pump).fault = None

    def pump_status(self, pump: str) -> PumpStatus:
        """Current :class:`PumpStatus` of ``pump``. Raises KeyError for an unknown pump."""
        with self._lock:
            p = self._pump(pump)
            sign = -1.0 if p.direction == "aspirate" else 1.0
            return PumpStatus(
                fill_level=p.syringe.total_volume,
                pumping=p.pumping,
                dosed_volume=p.dosed,
                flow=sign * p.flow if p.pumping else 0.0,
                target_volume=p.target,
                fault=p.fault,
            )

    def _pump(self, name: str) -> _Pump:
        try:
            return self._pumps[name]
        except KeyError:
            raise KeyError(f"unknown pump {name!r}") from None

    def _fault(self, p: _Pump, cause: str) -> None:
        p.fault, p.pumping = cause, False
        logger.warning("pump %s fault: %s", p.name, cause)

    # ------------------------------------------------------------------ time
    def advance(self, dt: float) -> None:
        """Move liquid for ``dt`` s: every running pump moves ``flow·dt`` (or what is left).

        Pumps are processed in configuration order, each pushing its increment through its
        whole route, so streams meeting downstream mix per call.
        """
        if dt <= 0:
            return
        with self._lock:
            self._tick += 1
            self._flows = {}
            for p in self._pumps.values():
                if p.pumping:
                    route = self._route(p)
                    if not isinstance(route, str):
                        for seg, _ in route.steps:
                            self._flows[seg.label] = self._flows.get(seg.label, 0.0) + p.flow
            for p in self._pumps.values():
                if p.pumping:
                    self._step(p, dt)
                    if not p.pumping:  # a finished move leaves its residues settled
                        self._settle(p)

    @property
    def evaporated(self) -> Liquid:
        """Liquid that has left the world as vapour (copy)."""
        return self.walls.evaporated.copy() if self.walls is not None else Liquid()

    def _through(self, seg: Segment, parcels: list[Liquid], at_start: bool,
                 key: tuple[int, str], flow: float) -> list[Liquid]:
        if self.walls is None:
            return seg.push(parcels, at_start, key)
        return self.walls.push(seg, parcels, at_start, key, self._flows.get(seg.label, flow))

    def _on_clock(self, now: float, dt: float) -> None:
        self.advance(dt)

    def _step(self, p: _Pump, dt: float) -> None:
        route = self._route(p)
        if isinstance(route, str):
            logger.warning("pump %s cannot %s: %s", p.name, p.direction, route)
            self._fault(p, "overpressure")
            return
        remaining = p.target - p.dosed
        volume = min(p.flow * dt, remaining)
        strike = self.fault_after.get(p.name) if p.name in self.faults else None
        if strike is not None and p.dosed + volume >= strike:
            volume = max(0.0, strike - p.dosed)
        if p.direction == "dispense":
            self._dispense(p, route, volume)
        else:
            self._aspirate(p, route, volume)
        if strike is not None and p.dosed + volume >= strike:
            p.dosed += volume
            self._fault(p, self.faults[p.name])
        elif remaining - volume <= 1e-12:
            p.dosed, p.pumping = p.target, False
        else:
            p.dosed += volume

    def _route(self, p: _Pump) -> Route | str:
        key = (p.name, p.direction)
        route = self._routes.get(key)
        if route is None:
            route = trace_route(self._adjacency, p.node, p.direction, self._is_open, self._vessels)
            self._routes[key] = route
        return route

    def _dispense(self, p: _Pump, route: Route, volume: float) -> None:
        key = (self._tick, p.name)
        parcels = [take_gas_first(p.syringe, volume)]
        for seg, at_start in route.steps:
            parcels = self._through(seg, parcels, at_start, key, p.flow)
        self.gas_vented += self._vessels[route.vessel].receive(parcels)

    def _aspirate(self, p: _Pump, route: Route, volume: float) -> None:
        key = (self._tick, p.name)
        drawn = self._vessels[route.vessel].draw(volume)
        self.gas_drawn += drawn.gas
        parcels = [drawn]
        for seg, at_start in route.steps:
            parcels = self._through(seg, parcels, at_start, key, p.flow)
        for parcel in parcels:
            p.syringe.add(parcel)

    # ------------------------------------------------------------------ fault injection
    def inject(self, name: str, kind: str, **params: float) -> None:
        """Inject a physical fault (catalogue in :mod:`simulators.faults`).

        Args:
            name: a pump, a valve or a vessel node.
            kind: ``"overload"`` (pump; ``after`` = mL dosed in a move before the drive
                faults, default 0 = at the start), ``"stuck"`` (valve; keeps its position) or
                ``"empty"`` (vessel; its liquid is taken away down to ``keep`` mL, default 0,
                so that a syringe drawing from it draws air).

        Raises:
            KeyError: ``name`` is no pump, valve or vessel.
            ValueError: ``kind`` does not apply to that kind of thing, or unknown parameters.
        """
        what = self._kind_of(name)
        allowed = {"pump": {"overload": {"after"}}, "valve": {"stuck": set()},
                   "vessel": {"empty": {"keep"}}}[what]
        if kind not in allowed:
            raise ValueError(f"{what} {name}: unknown fault {kind!r} (known: {sorted(allowed)})")
        if set(params) - allowed[kind]:
            raise ValueError(f"fault {kind!r} takes {sorted(allowed[kind])}, got {sorted(params)}")
        with self._lock:
            if kind == "empty":
                self._empty(name, float(params.get("keep", 0.0)))
                return
            self.faults[name] = kind
            if "after" in params:
                self.fault_after[name] = float(params["after"])
            self._routes.clear()

    def clear_faults(self) -> None:
        """Remove every injected fault cause and refill emptied vessels.

        A pump drive that has faulted stays in its fault state, as a real drive does once
        the cause is gone: only the drive's own reset (:meth:`clear_pump_fault`, the SDK's
        ``clear_fault()``) clears it.
        """
        with self._lock:
            self.faults.clear()
            self.fault_after.clear()
            for node, liquid in self.removed.items():
                self._vessels[node].content.add(liquid)
            self.removed.clear()

    def _kind_of(self, name: str) -> str:
        if name in self._pumps:
            return "pump"
        if name in self._positions:
            return "valve"
        if name in self._vessels:
            return "vessel"
        raise KeyError(f"no pump, valve or vessel named {name!r}")

    def _empty(self, node: str, keep: float) -> None:
        content = self._vessels[node].content
        taken = take_liquid(content, max(0.0, content.volume - keep))
        self.removed.setdefault(node, Liquid()).add(taken)
        logger.warning("vessel %s emptied to %.4g mL (fault injection)", node, content.volume)

    # ------------------------------------------------------------------ inspection
    def syringe_contents(self, pump: str) -> Liquid:
        """Copy of the syringe content of ``pump``. Raises KeyError if unknown."""
        with self._lock:
            return self._pump(pump).syringe.copy()

    def segment_contents(self, label: str) -> Liquid:
        """Copy of everything in tubing edge ``label`` (its core, wall layer and pocket).
        Raises KeyError if unknown."""
        with self._lock:
            seg = self._segments[label]
            residue = self.walls.held(label) if self.walls is not None else None  # flushes first
            out = seg.contents()
            if residue is not None:
                out.add(residue)
            return out

    def segment_residue(self, label: str) -> Liquid:
        """Copy of the wall layer and pocket of tubing edge ``label`` (what a plug-flow model
        would not have). Raises KeyError if unknown."""
        with self._lock:
            self._segments[label]
            return self.walls.held(label) if self.walls is not None else Liquid()

    def vessel_contents(self, node: str) -> Liquid:
        """Copy of the liquid in vessel ``node`` (gas is vented). Raises KeyError if unknown."""
        with self._lock:
            return self._vessels[node].content.copy()

    def vessel_mass(self, node: str) -> float:
        """Mass of liquid in vessel ``node`` in g (what a balance under it adds)."""
        with self._lock:
            return self._vessels[node].content.mass

    def vessel_names(self) -> tuple[str, ...]:
        """Nodes that are vessels (open ends), in construction order."""
        return tuple(self._vessels)

    def instrument_contents(self, name: str) -> Liquid:
        """Copy of the content of instrument ``name``'s cell (edge inlet → outlet).

        Raises:
            KeyError: unknown instrument, or no edge joins its inlet and outlet.
        """
        inst = self.config.instrument(name)
        return self.segment_contents(self.edge_between(inst.inlet, inst.outlet))

    def edge_between(self, a: str, b: str) -> str:
        """Label of a tubing edge joining nodes ``a`` and ``b`` (either orientation).

        Raises:
            KeyError: no edge joins them.
        """
        for seg, other, _ in self._adjacency.get(a, ()):
            if other == b:
                return seg.label
        raise KeyError(f"no edge between {a!r} and {b!r}")

    def totals(self) -> Liquid:
        """Everything in the world (vessels, syringes, segments) as one parcel."""
        with self._lock:
            if self.walls is not None:
                self.walls.flush()  # before anything is summed: a flush moves core ↔ layer
            return total(self._holders())

    def _holders(self) -> Iterable[Liquid]:
        yield from (v.content for v in self._vessels.values())
        yield from (p.syringe for p in self._pumps.values())
        for seg in self._segments.values():
            yield from seg.parcels
        if self.walls is not None:
            yield from self.walls.holders()
