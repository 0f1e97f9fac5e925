"""The plan builder: turns named actions (prime, fill, empty, push…) into typed steps while
keeping a working copy of the ledger up to date, so every later step is sized from what the
bench will hold at that point (syringe levels, primed lines, wet mixer lines).

The rules and factors are those of the first slice (``asab.actions.sample``, kept unchanged
in behaviour): priming draws 3 × the reservoir line's dead volume + 0.2 mL (at most half the
syringe) and sends it to waste; a push refills a syringe that would drop below its reserve
(``min_fill_fraction`` × V_max) to reserve + need + 2 % of V_max, all pumps pausing together
so that the merged stream keeps its ratio; every move is commanded wanted / the pump's
calibrated delivery factor.
"""

from __future__ import annotations

from collections.abc import Mapping

from asab.config import BenchConfig
from asab.errors import Cause, ConfigError, DeviceError
from asab.ledger.liquid import SOLVENT
from asab.ledger.model import BenchLedger, VesselKind
from asab.plan.effects import Edges, apply_step, holds_only
from asab.plan.steps import (
    Claims,
    Dispense,
    Fill,
    Move,
    Phase,
    PlannedRoute,
    Purpose,
    PushSummary,
    Step,
)
from asab.tubing import Route, TubingGraph, merge_settings

MARGIN = 1e-6
"""mL: float slack when comparing volumes (as in the first slice's fluidics)."""

REFILL_HEADROOM = 0.02
"""Fraction of V_max aspirated above what a stroke needs when a syringe is refilled."""

PRIME_FACTOR, PRIME_EXTRA, PRIME_CAP = 3.0, 0.2, 0.5
"""Priming draws PRIME_FACTOR × line dead volume + PRIME_EXTRA mL, at most PRIME_CAP × V_max."""


class PlanBuilder:
    """Builds the steps of one plan over a working copy of ``ledger``.

    Args:
        config: the bench configuration.
        graph: its tubing graph.
        ledger: the bench ledger (copied; the original is not changed).
        factors: pump → calibrated delivery factor (delivered / commanded; absent = 1).
    """

    def __init__(self, config: BenchConfig, graph: TubingGraph, ledger: BenchLedger,
                 factors: Mapping[str, float] | None = None) -> None:
        self.cfg, self.graph = config, graph
        self.ledger = ledger.clone()
        self.edges = Edges.of(config)
        self.factors = dict(factors or {})
        self.steps: list[Step] = []
        self.pushes: list[PushSummary] = []
        self.phases: list[tuple[Phase, int]] = []
        self.phase = Phase.FORMULATE

    # ------------------------------------------------------------------ bookkeeping
    def enter(self, phase: Phase) -> None:
        """Steps added from now on belong to ``phase``."""
        self.phase = phase
        self.phases.append((phase, len(self.steps)))

    def add(self, step: Step) -> int:
        """Append ``step`` and apply it to the working ledger; returns its index."""
        self.steps.append(step)
        apply_step(self.ledger, self.edges, step)
        return len(self.steps) - 1

    def route(self, source: str, target: str, via=(), avoid=()) -> Route:
        return self.graph.route(source, target, via=via, avoid=avoid)

    # ------------------------------------------------------------------ pumps
    def level(self, pump: str) -> float:
        """mL the syringe of ``pump`` will hold at this point of the plan."""
        return self.ledger.syringes[pump].volume

    def volume_max(self, pump: str) -> float:
        return self.cfg.syringe_of(pump).volume

    def flow_max(self, pump: str) -> float:
        return self.cfg.syringe_of(pump).max_flow

    def reserve(self, pump: str) -> float:
        """Lowest usable fill level of ``pump``, mL (``min_fill_fraction`` × V_max)."""
        return self.cfg.syringe_of(pump).min_fill_fraction * self.volume_max(pump)

    def usable(self, pump: str) -> float:
        return max(0.0, self.level(pump) - self.reserve(pump))

    def origin(self, source: str) -> str:
        """The ledger origin of liquid drawn from ``source``."""
        vessel = self.ledger.vessels.get(source)
        if vessel is not None and vessel.kind is VesselKind.SOLVENT:
            return SOLVENT
        for stock in self.cfg.stocks:
            if stock.reservoir == source:
                return stock.name
        return "gas"

    def primed(self, pump: str, source: str) -> bool:
        """The line ``source`` → ``pump`` (but for the tube at the pump, which every route of
        the pump shares) holds the source's liquid."""
        route = PlannedRoute.of(self.route(source, self.cfg.pump(pump).node))
        return holds_only(self.ledger, self.edges, route, self.origin(source),
                          skip_last=1 if len(route.edges) > 1 else 0)

    def wet(self, pump: str) -> bool:
        """The line ``pump`` → mixer outlet (but for the tube at the pump) holds the pump's
        stock."""
        stock = next((s for s in self.cfg.stocks if s.pump == pump), None)
        if stock is None:
            return False
        route = PlannedRoute.of(self.route(self.cfg.pump(pump).node,
                                           self.cfg.settings.mixer_outlet))
        return holds_only(self.ledger, self.edges, route, stock.name,
                          skip_first=1 if len(route.edges) > 1 else 0)

    # ------------------------------------------------------------------ elementary moves
    def fill(self, pump: str, source: str, volume: float, flow: float | None = None,
             purpose: Purpose = Purpose.REFILL) -> None:
        """Aspirate ``volume`` mL into ``pump`` from ``source`` (least-dead-volume route)."""
        if volume <= MARGIN:
            return
        if source not in self.ledger.vessels:
            raise ConfigError(f"{source} is not a vessel of the bench ledger (vessels: "
                              f"{', '.join(sorted(self.ledger.vessels))}); nothing to draw from")
        flow = min(flow or self.cfg.settings.aspirate_flow, self.flow_max(pump))
        route = self.route(source, self.cfg.pump(pump).node)
        self.add(Fill(phase=self.phase, purpose=purpose, pump=pump, source=source,
                      volume=volume, flow=flow, route=PlannedRoute.of(route),
                      claims=_claims(self.cfg, [pump], route, vessels=[source]), duration=volume / flow))

    def empty(self, pump: str, target: str, flow: float | None = None) -> None:
        """Dispense the whole content of ``pump`` into ``target``."""
        volume = self.level(pump)
        if volume <= MARGIN:
            return
        flow = min(flow or self.cfg.settings.gas_flow, self.flow_max(pump))
        route = self.route(self.cfg.pump(pump).node, target)
        self.add(Dispense(phase=self.phase, purpose=Purpose.EMPTY, sink=target,
                          moves=[Move(pump=pump, volume=volume, flow=flow,
                                      route=PlannedRoute.of(route))],
                          valve_settings=dict(route.valve_settings),
                          claims=_claims(self.cfg, [pump], route, vessels=[target]), duration=volume / flow))

    def prime_volume(self, pump: str, source: str) -> float:
        """mL drawn to prime ``pump`` from ``source``: 3 × the line's dead volume + 0.2 mL, at
        most half the syringe."""
        line = self.route(source, self.cfg.pump(pump).node).dead_volume
        return min(PRIME_FACTOR * line + PRIME_EXTRA, PRIME_CAP * self.volume_max(pump))

    def prime(self, sources: Mapping[str, str]) -> list[str]:
        """Prime every pump of ``sources`` (pump → source node) whose line is not primed yet:
        empty to waste, draw the priming volume, empty to waste. Returns the pumps primed."""
        waste = self.cfg.settings.waste_nodes[0]
        done = []
        for pump, source in sorted(sources.items()):
            if self.primed(pump, source):
                continue
            self.empty(pump, waste)
            self.fill(pump, source, self.prime_volume(pump, source), purpose=Purpose.PRIME)
            self.empty(pump, waste)
            done.append(pump)
        return done

    def push(self, flows: Mapping[str, float], volume: float, routes: Mapping[str, Route],
             sources: Mapping[str, str], purpose: Purpose, sink: str) -> PushSummary:
        """Dispense ``volume`` mL in total from several pumps at once, pump ``p`` at
        ``flows[p]`` (wanted mL/s) along ``routes[p]``, refilling low syringes from
        ``sources[p]`` between strokes.

        Raises:
            ValveConflictError: the routes need different positions of one valve.
            DeviceError: a syringe cannot be refilled (cause ``cannot refill``).
        """
        total_flow = sum(flows.values())
        drive = {p: f / self.factors.get(p, 1.0) for p, f in flows.items()}
        settings = merge_settings(routes.values())
        planned = {p: PlannedRoute.of(r) for p, r in routes.items()}
        indices: list[int] = []
        remaining = volume
        while remaining > MARGIN:
            self._refill_low(drive, remaining / total_flow, sources)
            stroke = min(remaining / total_flow,  # the refill rule's slack, MARGIN, here too
                         min((self.usable(p) + MARGIN) / f for p, f in drive.items()))
            if stroke <= 1e-9:
                raise DeviceError("bench", Cause.CANNOT_REFILL,
                                  f"{purpose}: a syringe cannot be refilled")
            moves = [Move(pump=p, volume=f * stroke, flow=f, route=planned[p],
                          factor=self.factors.get(p, 1.0)) for p, f in drive.items()]
            indices.append(self.add(Dispense(
                phase=self.phase, purpose=purpose, moves=moves, valve_settings=settings,
                sink=sink, duration=stroke,
                claims=_claims(self.cfg, list(drive), *routes.values(), vessels=[sink]))))
            remaining -= stroke * total_flow
        summary = PushSummary(purpose=purpose, flows=dict(flows), volume=volume, sink=sink,
                              valve_settings=settings, routes=planned, steps=indices)
        self.pushes.append(summary)
        return summary

    def _refill_low(self, drive: Mapping[str, float], duration: float,
                    sources: Mapping[str, str]) -> None:
        """Refill every pump that cannot run ``duration`` s more above its reserve: aspirate up
        to reserve + need + 2 % of V_max (or as much as fits)."""
        for pump, flow in sorted(drive.items()):
            need = flow * duration
            if self.usable(pump) + MARGIN >= need:
                continue
            level, vmax = self.level(pump), self.volume_max(pump)
            wanted = self.reserve(pump) + need + REFILL_HEADROOM * vmax - level
            self.fill(pump, sources[pump], min(vmax - level, wanted))


def _claims(config: BenchConfig, pumps: list[str], *routes: Route, vessels=()) -> Claims:
    """What a move holds: its pumps, the valves its routes set, the vessels at their ends, and
    the instrument cell when a route passes through one (its inlet or outlet node)."""
    valves = sorted({v for r in routes for v in r.valve_settings})
    ends = {r.nodes[0] for r in routes} | {r.nodes[-1] for r in routes}
    on_routes = {n for r in routes for n in r.nodes}
    cells = [i.name for i in config.instruments if i.inlet in on_routes or i.outlet in on_routes]
    return Claims(pumps=tuple(sorted(pumps)), valves=tuple(valves),
                  vessels=tuple(sorted(set(vessels) | ends)),
                  instrument=cells[0] if cells else None)
