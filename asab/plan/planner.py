"""The planner: request + bench configuration + ledger → :class:`~asab.plan.steps.JobPlan`.

Pure: it reads the configuration, the tubing graph and the ledger, never a driver. One
function per kind of plan; the density job, the vial delivery, the servers' single actions
and the recovery after a failure are all plans, executed by :mod:`asab.execute`.

Volumes (unchanged from the first slice, :class:`asab.config.BenchSettings` factors):

* first portion: ``first_portion_factor`` × (total flow × the transit time of the slowest
  inlet line not yet wet with its stock + the line the waste route shares with the sample
  route, which holds whatever came before);
* sample: ``flush_factor`` × (dead volume mixer outlet → cell inlet + the cell's volume, the
  larger of its edge's dead volume and the instrument's ``measuring_volume``);
* drain: ``drain_factor`` × the dead volume mixer outlet → cell → sink, of gas, after
  emptying the gas pump to waste; clean: ``clean_factor`` × that volume of solvent into waste,
  then a drain into waste;
* vial delivery: volume + U, U the dead volume of the vial's own branch (it holds gas, vented
  in the vial, and keeps U of mixture afterwards); the line shared with the waste route is
  rinsed and dried afterwards, the vial's branch never.

Every plan's consumption is checked against the ledger (:mod:`asab.plan.consumables`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

from asab.config import BenchConfig, Instrument, SizingMode
from asab.errors import (
    AsabError,
    BelowResolutionError,
    RoutingError,
)
from asab.formulation import FormulationPlan, StockModel, plan_formulation
from asab.ledger.model import BenchLedger, VesselKind, initial_ledger
from asab.plan.builder import PlanBuilder
from asab.plan.carryover import Sizing, SizingRule, foreign_in_cell, predict_cell
from asab.plan.consumables import (
    Consumable,
    ConsumableError,
    check_consumables,
    consumption,
    total_drawn,
)
from asab.plan.effects import apply_step
from asab.plan.steps import (
    Claims,
    Dispense,
    ForgetLines,
    JobKind,
    JobPlan,
    MakeSafe,
    Measure,
    Move,
    Phase,
    PhaseMark,
    PlannedRoute,
    Purpose,
    PushSummary,
    Tare,
    Weigh,
)
from asab.tubing import Route, TubingGraph

MEASURE_ESTIMATE = 300.0
"""s a Density_Viscosity measurement is expected to take (temperature equilibration and all
repetitions; the simulator's method table, an assumption of the right order)."""


class BenchContext:
    """What the planner plans against: configuration, tubing graph, delivery factors.

    Args:
        config: the bench configuration.
        graph: its tubing graph (built from ``config`` when omitted).
        factors: pump → calibrated delivery factor (absent = 1).
    """

    def __init__(self, config: BenchConfig, graph: TubingGraph | None = None,
                 factors: Mapping[str, float] | None = None) -> None:
        self.config = config
        self.graph = graph or TubingGraph.from_config(config)
        self.factors = dict(factors or {})

    def builder(self, ledger: BenchLedger) -> PlanBuilder:
        return PlanBuilder(self.config, self.graph, ledger, self.factors)


# ---------------------------------------------------------------------- geometry
def other_inlets(config: BenchConfig, keep: Instrument | None = None) -> list[str]:
    """Instrument inlets a route must not pass through (every cell but ``keep``)."""
    return [i.inlet for i in config.instruments if keep is None or i.name != keep.name]


def shared_line_volume(graph: TubingGraph, a: Route, b: Route) -> float:
    """Dead volume (mL) of the common beginning of two routes that start at the same node."""
    n = 0
    while n + 1 < min(len(a.nodes), len(b.nodes)) and a.nodes[n + 1] == b.nodes[n + 1]:
        n += 1
    return graph.route(a.nodes[0], a.nodes[n]).dead_volume if n else 0.0


def density_instrument(config: BenchConfig) -> Instrument:
    """The densimeter's cell. Raises AsabError when the bench has no densimeter."""
    if config.densimeter is None:
        raise AsabError("this bench has no densimeter configured")
    return config.instrument(config.densimeter.instrument)


def density_sink(config: BenchConfig) -> str:
    """Where a density sample goes: the vessel on the balance, else the first waste."""
    return config.balance.vessel if config.balance else config.settings.waste_nodes[0]


def sample_shared_line(b: PlanBuilder, instrument: Instrument) -> float:
    s = b.cfg.settings
    return shared_line_volume(
        b.graph, b.route(s.mixer_outlet, s.waste_nodes[0], avoid=other_inlets(b.cfg)),
        b.route(s.mixer_outlet, instrument.inlet, avoid=other_inlets(b.cfg, instrument)))


def sample_volume(b: PlanBuilder, instrument: Instrument) -> float:
    """mL pushed through the cell (see the module docstring)."""
    s = b.cfg.settings
    line = b.route(s.mixer_outlet, instrument.inlet,
                   avoid=other_inlets(b.cfg, instrument)).dead_volume
    cell = b.route(instrument.inlet, instrument.outlet).dead_volume
    return s.flush_factor * (line + max(cell, instrument.measuring_volume))


def first_portion_volume(b: PlanBuilder, flows: Mapping[str, float], shared: float) -> float:
    """mL of the first portion (see the module docstring); ``shared``: mL of line the waste
    route shares with the route the sample takes afterwards."""
    s = b.cfg.settings
    dry = [p for p in flows if not b.wet(p)]
    transit = max((b.route(b.cfg.pump(p).node, s.mixer_outlet).dead_volume / flows[p]
                   for p in dry), default=0.0)
    return s.first_portion_factor * (transit * sum(flows.values()) + shared)


# ---------------------------------------------------------------------- named actions
def mix_inputs(config: BenchConfig, plan: FormulationPlan) -> tuple[dict[str, float],
                                                                   dict[str, str]]:
    """``(flows, sources)``: pump → mL/s and pump → reservoir for the stocks a plan uses."""
    used = [s for s, f in plan.flows.items() if f > 0]
    flows = {plan.pumps[s]: plan.flows[s] for s in used}
    sources = {config.stock(s).pump: config.stock(s).reservoir for s in used}
    return flows, sources


def first_portion(b: PlanBuilder, flows, sources, waste: str, shared: float,
                  avoid: Sequence[str]) -> PushSummary:
    """Run the stocks at their flows through the mixer into ``waste``."""
    s = b.cfg.settings
    routes = {p: b.route(b.cfg.pump(p).node, waste, via=[s.mixer_outlet], avoid=avoid)
              for p in flows}
    volume = first_portion_volume(b, flows, shared)
    push = b.push(flows, volume, routes, sources, Purpose.FIRST_PORTION, waste)
    push.shared_line = shared
    return push


def through_cell(b: PlanBuilder, pump: str, source: str, instrument: Instrument, sink: str,
                 factor: float, purpose: Purpose) -> PushSummary:
    """Push ``factor`` × the dead volume mixer outlet → cell → ``sink`` from one pump that
    refills from ``source``, at ``settings.gas_flow``."""
    s = b.cfg.settings
    nodes = [s.mixer_outlet, instrument.inlet, instrument.outlet]
    route = b.route(b.cfg.pump(pump).node, sink, via=nodes,
                    avoid=other_inlets(b.cfg, instrument))
    volume = factor * b.route(nodes[0], sink, via=nodes[1:]).dead_volume
    flow = min(s.gas_flow, b.flow_max(pump))
    return b.push({pump: flow}, volume, {pump: route}, {pump: source}, purpose, sink)


def drain(b: PlanBuilder, instrument: Instrument, sink: str) -> PushSummary:
    """Blow gas from the mixer through the cell into ``sink`` after emptying the gas pump."""
    s = b.cfg.settings
    pump = s.gas_pump or s.solvent_pump
    b.empty(pump, s.waste_nodes[0])
    return through_cell(b, pump, s.gas_nodes[0], instrument, sink, s.drain_factor,
                        Purpose.DRAIN)


BLANK_ESTIMATE = 100.0
"""s a one-repetition blank reading is expected to take."""


def clean(b: PlanBuilder, instrument: Instrument, blank: str | None = None
          ) -> list[PushSummary]:
    """Rinse mixer, lines and cell with solvent into waste, then drain with gas into waste.
    With ``blank`` (a sample name), the cell full of solvent is read in between."""
    s = b.cfg.settings
    waste = s.waste_nodes[0]
    b.prime({s.solvent_pump: s.solvent_node})
    b.empty(s.solvent_pump, waste)  # it may hold gas from the last drain
    rinse = through_cell(b, s.solvent_pump, s.solvent_node, instrument, waste,
                         s.clean_factor, Purpose.CLEAN)
    if blank is not None:
        b.add(Measure(phase=b.phase, sample=blank, blank=True, duration=BLANK_ESTIMATE,
                      claims=Claims(instrument=instrument.name)))
    return [rinse, drain(b, instrument, waste)]


def _flush(b: PlanBuilder, pump: str, source: str, sink: str, volume: float,
           purpose: Purpose) -> PushSummary:
    cfg = b.cfg
    route = b.route(cfg.pump(pump).node, sink, via=[cfg.settings.mixer_outlet],
                    avoid=other_inlets(cfg))
    flow = min(cfg.settings.gas_flow, b.flow_max(pump))
    return b.push({pump: flow}, volume, {pump: route}, {pump: source}, purpose, sink)


def clean_shared_line(b: PlanBuilder, waste: str) -> list[PushSummary]:
    """Rinse mixer outlet → ``waste`` with solvent (``clean_factor`` × its dead volume), then
    blow it dry with gas (``drain_factor`` ×)."""
    s = b.cfg.settings
    gas_pump = s.gas_pump or s.solvent_pump
    line = b.route(s.mixer_outlet, waste, avoid=other_inlets(b.cfg)).dead_volume
    b.prime({s.solvent_pump: s.solvent_node})
    b.empty(s.solvent_pump, waste)
    out = [_flush(b, s.solvent_pump, s.solvent_node, waste, s.clean_factor * line,
                  Purpose.CLEAN)]
    b.empty(gas_pump, waste)
    out.append(_flush(b, gas_pump, s.gas_nodes[0], waste, s.drain_factor * line,
                      Purpose.DRAIN))
    return out


# ---------------------------------------------------------------------- plans
def _finish(b: PlanBuilder, plan: JobPlan, start: BenchLedger, *, check: bool = True,
            after: dict[str, float] | None = None) -> JobPlan:
    plan.steps, plan.pushes = b.steps, b.pushes
    plan.phases = [PhaseMark(phase=p, step=i) for p, i in b.phases]
    plan.duration = math.fsum(st.duration for st in b.steps)
    plan.consumption = consumption(b.cfg, start, b.ledger)
    if check:
        check_consumables(b.cfg, start, b, plan, after)
    return plan


_CLEAN: dict[int, tuple[BenchConfig, dict[str, float], float]] = {}


def _clean_on_fresh(ctx: BenchContext) -> tuple[dict[str, float], float]:
    """(solvent node → mL, s) of a clean of the cell planned on a fresh bench (its volumes are
    fixed factors of dead volumes), cached per configuration."""
    cfg = ctx.config
    hit = _CLEAN.get(id(cfg))
    if hit is None or hit[0] is not cfg:
        fresh = initial_ledger(cfg)
        solvent = {n for n, v in fresh.vessels.items() if v.kind is VesselKind.SOLVENT}
        plan = plan_clean(ctx, fresh, check=False)
        drawn = total_drawn(plan)
        hit = _CLEAN[id(cfg)] = (cfg, {n: v for n, v in drawn.items() if n in solvent},
                                 plan.duration)
    return dict(hit[1]), hit[2]


def deferred_clean(ctx: BenchContext) -> dict[str, float]:
    """Solvent node → mL a clean of the cell draws: what a job that leaves its clean to the
    next one must leave in the bottle."""
    return _clean_on_fresh(ctx)[0]


PRE_CLEAN_BOUND = 0.8
"""Share of a fresh-bench clean's duration below which a pre-clean cannot cost: when the flush
alone reaches the tolerance in less bench time, the pre-clean option is not planned."""


def formulate(ctx: BenchContext, ledger: BenchLedger, composition, volume: float, *,
              policy=None, stocks: Sequence[str] | None = None) -> FormulationPlan:
    """The formulation plan of ``composition`` (``volume`` mL), from ``stocks`` only when
    given. Raises NotMakeableError, RequestError, BelowResolutionError (not deliverable)."""
    model = StockModel.from_config(ctx.config, stocks=stocks) if stocks is not None else None
    plan = plan_formulation(ctx.config, composition, volume, policy=policy, model=model,
                            available=available_stocks(ctx.config, ledger))
    if not plan.deliverable:
        raise BelowResolutionError("the pumps cannot deliver this mix: " + "; ".join(plan.notes))
    return plan


def available_stocks(config: BenchConfig, ledger: BenchLedger) -> list[str]:
    """Names of the stocks whose reservoir holds liquid beyond ``settings.reservoir_reserve``
    by the ledger (a reservoir the ledger does not know counts as available). The mix choice
    prefers these; whether one holds enough for a job is checked on the whole plan."""
    reserve = config.settings.reservoir_reserve
    out = []
    for stock in config.stocks:
        vessel = ledger.vessels.get(stock.reservoir)
        if vessel is None or vessel.volume > reserve + 1e-9:
            out.append(stock.name)
    return out


def stock_aware(make, ctx: BenchContext, ledger: BenchLedger, composition, volume: float,
                policy=None) -> JobPlan:
    """Plan with the preferred mix; when that plan is refused because a stock runs short,
    plan again without the stocks that run short, as long as the request stays makeable and
    deliverable (the first refusal is raised otherwise).

    ``make(formulation) → JobPlan`` builds the plan for one formulation.
    """
    formulation = formulate(ctx, ledger, composition, volume, policy=policy)
    try:
        return make(formulation)
    except ConsumableError as first:
        if not first.stocks:
            raise
        excluded = set(first.stocks)
        while True:
            others = [s.name for s in ctx.config.stocks if s.name not in excluded]
            try:
                alt = formulate(ctx, ledger, composition, volume, policy=policy, stocks=others)
                plan = make(alt)
            except ConsumableError as again:
                if not again.stocks or set(again.stocks) <= excluded:
                    raise first from None
                excluded |= set(again.stocks)
                continue
            except (AsabError, ValueError):
                raise first from None
            if alt.distance > formulation.distance + formulation.tolerance:
                raise first from None
            plan.notes.append("stocks avoided because they run short: "
                              + ", ".join(sorted(excluded)))
            return plan


def plan_density(ctx: BenchContext, ledger: BenchLedger, formulation: FormulationPlan, *,
                 request_id: str = "", sample: str = "sample", check: bool = True,
                 clean_after: bool = True) -> JobPlan:
    """The density/viscosity job: [pre-clean] → prime → mix → deliver → measure → drain
    (weighed) → [clean].

    With ``[carryover] sizing = "predicted"`` (the default) the sample flush is the smallest
    volume whose predicted contamination of the measured sample (:mod:`asab.plan.carryover`)
    stays within ``[carryover] tolerance``, between ``min_flush_factor`` and
    ``max_flush_factor`` × (line + cell); when the cell holds another sample's residue, a
    solvent rinse first (pre-clean) is planned instead if that alone reaches the tolerance or
    costs less bench time. ``clean_after=False`` leaves the solvent clean out (the next job
    of a run decides whether it needs one). With ``"fixed"``: the [settings] factors, always
    cleaned. ``plan.sizing`` says which rule sized each volume.

    Raises:
        ConsumableError: the ledger does not hold what the plan needs (nothing moved).
        RoutingError, AsabError: no densimeter, no route.
    """
    cfg = ctx.config
    instrument = density_instrument(cfg)
    if cfg.carryover.sizing is SizingMode.FIXED:
        return _density(ctx, ledger, formulation, request_id, sample, check, None, False, True)
    candidates = []
    options = [False, True] if foreign_in_cell(cfg, ledger, instrument) > 1e-6 else [False]
    sizing_ledger = _ample(cfg, ledger)
    for pre in options:
        if pre and candidates and not candidates[0][0] and (
                candidates[0][2] <= PRE_CLEAN_BOUND * _clean_on_fresh(ctx)[1]):
            break  # the flush alone is within tolerance and cheaper than any rinse
        b, deliver = _density_start(ctx, sizing_ledger or ledger, formulation, pre,
                                    request_id, sample)
        volume, contamination, rule = _size_flush(b, formulation, instrument, *deliver)
        cost = volume / sum(deliver[0].values()) + (b.pre_clean_seconds if pre else 0.0)
        candidates.append((rule is SizingRule.NOT_REACHED, contamination if rule is
                           SizingRule.NOT_REACHED else 0.0, cost, pre, volume, contamination,
                           rule, (b, deliver)))
    _, _, _, pre, volume, contamination, rule, start = min(candidates, key=lambda c: c[:4])
    if sizing_ledger is not None:
        start = None  # sized on a copy: the plan itself is built on the bench's ledger
    return _density(ctx, ledger, formulation, request_id, sample, check,
                    (volume, contamination, rule), pre, clean_after, start)


SIZING_RESERVE = 20.0
"""mL of stock a reservoir must hold for the flush to be sized on the bench's own ledger; below
it the sizing assumes the stocks are there (a reservoir drawn dry would put air into the
sizing's lines, and the consumables check refuses such a plan anyway, saying what it needs)."""


def _ample(cfg, ledger: BenchLedger) -> BenchLedger | None:
    """A copy of ``ledger`` whose stock reservoirs hold at least :data:`SIZING_RESERVE` mL of
    their stock, or None when they all do already."""
    low = [s for s in cfg.stocks if s.reservoir in ledger.vessels and sum(
        ledger.vessels[s.reservoir].content.values()) < SIZING_RESERVE]
    if not low:
        return None
    copy = ledger.clone()
    for s in low:
        content = dict(copy.vessels[s.reservoir].content)
        content[s.name] = content.get(s.name, 0.0) + SIZING_RESERVE
        copy.vessels[s.reservoir].content = content
    return copy


def _density_start(ctx: BenchContext, ledger: BenchLedger, formulation: FormulationPlan,
                   pre_clean: bool, request_id: str, sample: str):
    """The builder after [pre-clean] → prime → mix (→ tare), and ``(flows, routes, sources,
    sink)`` of the sample push."""
    cfg = ctx.config
    instrument = density_instrument(cfg)
    flows, sources = mix_inputs(cfg, formulation)
    sink = density_sink(cfg)
    b = ctx.builder(ledger)
    b.pre_clean_seconds = 0.0
    if pre_clean:
        b.enter(Phase.CLEAN)
        first = len(b.steps)
        clean(b, instrument)
        b.pre_clean_seconds = math.fsum(st.duration for st in b.steps[first:])
    b.enter(Phase.PRIME)
    b.prime(sources)
    b.enter(Phase.MIX)
    first_portion(b, flows, sources, cfg.settings.waste_nodes[0],
                  sample_shared_line(b, instrument), other_inlets(cfg))
    if cfg.balance is not None:
        b.add(Tare(phase=b.phase))
    nodes = [cfg.settings.mixer_outlet, instrument.inlet, instrument.outlet]
    routes = {p: b.route(cfg.pump(p).node, sink, via=nodes, avoid=other_inlets(cfg, instrument))
              for p in flows}
    return b, (flows, routes, sources, sink)


def _size_flush(b: PlanBuilder, formulation: FormulationPlan, instrument: Instrument,
                flows, routes, sources, sink) -> tuple[float, float, SizingRule]:
    """``(volume, contamination, rule)``: the smallest sample push (mL) within the
    ``[carryover]`` bounds whose predicted contamination is within tolerance (bisection; the
    contamination falls with the volume), else the largest."""
    cfg = b.cfg
    co = cfg.carryover
    unit = sample_volume(b, instrument) / cfg.settings.flush_factor  # line + cell, mL
    total_flow = sum(flows.values())
    stock_of = {st.pump: st.name for st in cfg.stocks}
    # what lies past the cell outlet cannot change what the cell holds: the probe stops there
    probe_routes = {p: _up_to(PlannedRoute.of(r), instrument.outlet) for p, r in routes.items()}

    planned = {stock_of[p]: f for p, f in flows.items()}
    found: dict[float, float] = {}  # volume → predicted contamination (largest |Δx|)

    def contamination(volume: float) -> float:
        """The predicted carry-over after a push of ``volume`` mL, as a share of the
        tolerances (CellPrediction.excess: ≤ 1 is within)."""
        led = b.ledger.clone()
        for pump in flows:
            syr = led.syringes[pump]
            led.syringes[pump] = syr.model_copy(update={"content": {stock_of[pump]: volume}})
        step = Dispense(phase=Phase.DELIVER, moves=[
            Move(pump=p, volume=volume * f / total_flow, flow=f,
                 route=probe_routes[p]) for p, f in flows.items()],
            valve_settings={}, sink=sink)
        apply_step(led, b.edges, step)
        pred = predict_cell(cfg, led, instrument, formulation.achieved, planned)
        found[volume] = pred.contamination
        return pred.excess(co)

    lo, hi = co.min_flush_factor * unit, max(co.max_flush_factor, co.min_flush_factor) * unit
    c_lo = contamination(lo)
    if c_lo <= 1.0:
        return lo, found[lo], SizingRule.PREDICTED
    c_hi = contamination(hi)
    if c_hi > 1.0:
        return hi, found[hi], SizingRule.NOT_REACHED
    for _ in range(6):  # regula falsi on ln(excess), which falls about linearly
        if hi - lo < 0.02 * unit:
            break
        t = math.log(c_lo) / (math.log(c_lo) - math.log(max(c_hi, 1e-300)))
        mid = lo + min(max(t, 0.1), 0.9) * (hi - lo)
        c_mid = contamination(mid)
        if c_mid <= 1.0:
            hi, c_hi = mid, c_mid
            if c_mid >= 0.8:
                break
        else:
            lo, c_lo = mid, c_mid
    return hi, found[hi], SizingRule.PREDICTED


def _up_to(route: PlannedRoute, node: str) -> PlannedRoute:
    """``route`` cut after ``node`` (unchanged when it does not pass it)."""
    if node not in route.nodes:
        return route
    i = route.nodes.index(node)
    return route.model_copy(update={"nodes": route.nodes[:i + 1], "edges": route.edges[:i]})


def _density(ctx: BenchContext, ledger: BenchLedger, formulation: FormulationPlan,
             request_id: str, sample: str, check: bool,
             flush: tuple[float, float, SizingRule] | None, pre_clean: bool,
             clean_after: bool, start=None) -> JobPlan:
    """The plan; ``start``: the :func:`_density_start` result for ``pre_clean`` when the
    sizing already built it (its builder has not moved on since)."""
    cfg = ctx.config
    s = cfg.settings
    instrument = density_instrument(cfg)
    b, (flows, routes, sources, sink) = start or _density_start(
        ctx, ledger, formulation, pre_clean, request_id, sample)
    plan = JobPlan(kind=JobKind.DENSITY, bench=cfg.name, request_id=request_id,
                   formulation=formulation, sample=sample, instrument=instrument.name, sink=sink)
    first = plan_push(b, Purpose.FIRST_PORTION)
    sizing = []
    if pre_clean:
        rinse = b.pushes[0]
        sizing.append(Sizing(what="pre-clean", volume=rinse.volume, rule=SizingRule.FIXED_FACTOR,
                             note=f"the cell held another sample's residue; clean_factor "
                                  f"{s.clean_factor} × the route's dead volume of solvent"))
    sizing.append(Sizing(what="first portion", volume=first.volume if first else 0.0,
                         rule=SizingRule.TRANSIT,
                         note=f"first_portion_factor {s.first_portion_factor} × (dry inlet "
                              f"transit + {first.shared_line if first else 0.0:.3f} mL shared line)"))
    b.enter(Phase.DELIVER)
    if flush is None:
        volume = sample_volume(b, instrument)
        sizing.append(Sizing(what="sample flush", volume=volume, rule=SizingRule.FIXED_FACTOR,
                             note=f"flush_factor {s.flush_factor} × (line + cell)"))
    else:
        volume, contamination, rule = flush
        sizing.append(Sizing(
            what="sample flush", volume=volume, rule=rule, contamination=contamination,
            note=f"tolerance {cfg.carryover.tolerance:g} mole fraction"
                 + (f", {cfg.carryover.density_tolerance:g} g/cm³ density shift"
                    if cfg.carryover.density_tolerance is not None else "")))
    b.push(flows, volume, routes, sources, Purpose.SAMPLE, sink)
    b.enter(Phase.MEASURE)
    plan.cell_prediction = predict_cell(cfg, b.ledger, instrument, formulation.achieved,
                                        {st.name: flows[st.pump] for st in cfg.stocks
                                         if st.pump in flows})
    if flush is not None:  # the sizing record says what the density limit saw, too
        sizing[-1] = sizing[-1].model_copy(
            update={"density_shift": plan.cell_prediction.density_shift})
    b.add(Measure(phase=b.phase, sample=sample, duration=MEASURE_ESTIMATE,
                  claims=Claims(instrument=instrument.name)))
    b.enter(Phase.DRAIN)
    drain(b, instrument, sink)
    if cfg.balance is not None:
        b.add(Weigh(phase=b.phase, reads=1))
    if clean_after:
        b.enter(Phase.CLEAN)
        pushes = clean(b, instrument, f"{sample}_blank" if cfg.carryover.blank else None)
        sizing.append(Sizing(what="clean", volume=pushes[0].volume, rule=SizingRule.FIXED_FACTOR,
                             note=f"clean_factor {s.clean_factor} × the route's dead volume"))
    else:
        sizing.append(Sizing(what="clean", volume=0.0, rule=SizingRule.SKIPPED,
                             note="left to the next job of the run (a pre-clean when its "
                                  "predicted carry-over needs one); its solvent is kept"))
    plan.sizing = sizing
    return _finish(b, plan, ledger, check=check,
                   after=None if clean_after else deferred_clean(ctx))


def plan_push(b: PlanBuilder, purpose: Purpose) -> PushSummary | None:
    """The builder's first push with ``purpose`` (None if none yet)."""
    return next((p for p in b.pushes if p.purpose is purpose), None)


def vial_routes(ctx: BenchContext, vial: str) -> tuple[Route, str, Route, float]:
    """``(to_vial, waste, to_waste, shared)``: mixer outlet → ``vial``, the waste whose route
    from the mixer outlet shares the longest line with it, that route, and the shared mL.

    Raises:
        RoutingError: no route to the vial, or to any waste.
    """
    cfg = ctx.config
    s, avoid = cfg.settings, other_inlets(cfg)
    to_vial = ctx.graph.route(s.mixer_outlet, vial, avoid=avoid)
    best: tuple[float, str, Route] | None = None
    for waste in s.waste_nodes:
        try:
            r = ctx.graph.route(s.mixer_outlet, waste, avoid=avoid)
        except RoutingError:
            continue
        shared = common_line_volume(cfg, r, to_vial)
        if best is None or shared > best[0]:
            best = (shared, waste, r)
    if best is None:
        raise RoutingError(f"no route from {s.mixer_outlet} to any waste")
    shared, waste, to_waste = best
    return to_vial, waste, to_waste, shared


def common_line_volume(config: BenchConfig, a: Route, b: Route) -> float:
    """mL of the tubing two routes share from their common start (by edge label)."""
    dead = {e.label: e.dead_volume for e in config.tubing.edges}
    shared = []
    for ea, eb in zip(a.edges, b.edges):
        if ea != eb:
            break
        shared.append(dead[ea])
    return math.fsum(shared)


def plan_vial(ctx: BenchContext, ledger: BenchLedger, formulation: FormulationPlan, vial: str,
              volume: float, *, request_id: str = "", check: bool = True) -> JobPlan:
    """The delivery into ``vial``: prime → first portion to waste → ``volume`` + the vial's
    branch into the vial → rinse and dry the shared line.

    Raises:
        ConsumableError: the ledger does not hold what the plan needs (nothing moved).
        RoutingError: no route.
    """
    cfg = ctx.config
    flows, sources = mix_inputs(cfg, formulation)
    to_vial, waste, _to_waste, shared = vial_routes(ctx, vial)
    branch = to_vial.dead_volume - shared
    b = ctx.builder(ledger)
    plan = JobPlan(kind=JobKind.VIAL, bench=cfg.name, request_id=request_id,
                   formulation=formulation, vial=vial, waste=waste, vial_branch=branch,
                   volume_requested=volume, sink=vial)
    b.enter(Phase.PRIME)
    b.prime(sources)
    b.enter(Phase.MIX)
    first_portion(b, flows, sources, waste, shared, other_inlets(cfg))
    b.enter(Phase.DELIVER)
    routes = {p: b.route(cfg.pump(p).node, vial, via=[cfg.settings.mixer_outlet],
                         avoid=other_inlets(cfg)) for p in flows}
    b.push(flows, volume + branch, routes, sources, Purpose.VIAL, vial)
    b.enter(Phase.CLEAN)
    clean_shared_line(b, waste)
    return _finish(b, plan, ledger, check=check)


def plan_first_vial(ctx: BenchContext, ledger: BenchLedger, composition, volume: float,
                    vials: Sequence[str], *, request_id: str = "", policy=None) -> JobPlan:
    """The delivery of ``volume`` mL of ``composition`` into the first of ``vials`` the ledger
    can fill (stock-aware, :func:`stock_aware`).

    Raises:
        ConsumableError: no vial can take it (the last vial's refusal), or another consumable
            runs short.
        ValueError: ``vials`` is empty.
    """
    if not vials:
        raise ValueError("no vial to plan for")
    for i, vial in enumerate(vials):
        try:
            return stock_aware(lambda f, _v=vial: plan_vial(
                ctx, ledger, f, _v, volume, request_id=request_id),
                ctx, ledger, composition, volume, policy)
        except ConsumableError as exc:
            if exc.kinds != {Consumable.VIAL} or i == len(vials) - 1:
                raise
    raise AssertionError("unreachable")


def plan_prime(ctx: BenchContext, ledger: BenchLedger, sources: Mapping[str, str]) -> JobPlan:
    """Prime the lines of ``sources`` (pump → source node) that are not primed yet."""
    b = ctx.builder(ledger)
    plan = JobPlan(kind=JobKind.PRIME, bench=ctx.config.name)
    b.enter(Phase.PRIME)
    primed = b.prime(sources)
    plan.notes.append("primed: " + (", ".join(primed) or "none needed"))
    return _finish(b, plan, ledger)


def plan_mix(ctx: BenchContext, ledger: BenchLedger, formulation: FormulationPlan, *,
             deliver: bool) -> JobPlan:
    """The servers' mix (prime + first portion) or deliver (… + tare + sample into the
    balance vessel)."""
    cfg = ctx.config
    instrument = density_instrument(cfg)
    flows, sources = mix_inputs(cfg, formulation)
    b = ctx.builder(ledger)
    plan = JobPlan(kind=JobKind.DELIVER if deliver else JobKind.MIX, bench=cfg.name,
                   formulation=formulation, instrument=instrument.name)
    b.enter(Phase.PRIME)
    primed = b.prime(sources)
    plan.notes.append("primed: " + (", ".join(primed) or "none needed"))
    b.enter(Phase.MIX)
    first_portion(b, flows, sources, cfg.settings.waste_nodes[0],
                  sample_shared_line(b, instrument), other_inlets(cfg))
    if deliver:
        sink = density_sink(cfg)
        plan.sink = sink
        b.enter(Phase.TARE)
        if cfg.balance is not None:
            b.add(Tare(phase=b.phase))
        b.enter(Phase.DELIVER)
        nodes = [cfg.settings.mixer_outlet, instrument.inlet, instrument.outlet]
        routes = {p: b.route(cfg.pump(p).node, sink, via=nodes,
                             avoid=other_inlets(cfg, instrument)) for p in flows}
        b.push(flows, sample_volume(b, instrument), routes, sources, Purpose.SAMPLE, sink)
    return _finish(b, plan, ledger)


def plan_drain(ctx: BenchContext, ledger: BenchLedger, sink: str | None = None) -> JobPlan:
    """Blow gas through mixer, lines and cell into ``sink`` (default the balance vessel) and
    weigh it if it is on the balance."""
    cfg = ctx.config
    instrument = density_instrument(cfg)
    sink = sink or density_sink(cfg)
    b = ctx.builder(ledger)
    plan = JobPlan(kind=JobKind.DRAIN, bench=cfg.name, instrument=instrument.name, sink=sink)
    b.enter(Phase.DRAIN)
    drain(b, instrument, sink)
    b.enter(Phase.WEIGH)
    if cfg.balance is not None and cfg.balance.vessel == sink:
        b.add(Weigh(phase=b.phase, reads=1))
    return _finish(b, plan, ledger)


def plan_clean(ctx: BenchContext, ledger: BenchLedger, *, check: bool = True) -> JobPlan:
    """Rinse mixer, lines and cell with solvent into waste, then drain with gas
    (``check``: refuse it for consumables, ConsumableError)."""
    cfg = ctx.config
    instrument = density_instrument(cfg)
    b = ctx.builder(ledger)
    plan = JobPlan(kind=JobKind.CLEAN, bench=cfg.name, instrument=instrument.name)
    b.enter(Phase.CLEAN)
    clean(b, instrument)
    return _finish(b, plan, ledger, check=check)


def plan_recovery(ctx: BenchContext, ledger: BenchLedger, *, kind: Literal["density", "vial"],
                  drain_lines: bool, vial: str | None = None) -> tuple[JobPlan, list[str]]:
    """The recovery after a failure, as a plan: once liquid has moved, drain and clean the
    densimeter route (density) or rinse and dry the line shared with the vial route (vial);
    then mark the lines' content unknown (every pump is primed again, every mixing line
    counts as dry); in every case end by making the bench safe.

    Consumables are not checked (a recovery runs with what is left).

    Returns:
        ``(plan, problems)``: ``problems`` lists what could not be planned (e.g. no route);
        the plan then holds only the steps that could be.
    """
    cfg = ctx.config
    b = ctx.builder(ledger)
    plan = JobPlan(kind=JobKind.RECOVER, bench=cfg.name)
    problems: list[str] = []
    b.enter(Phase.RECOVER)
    if drain_lines:
        try:
            if kind == "vial" and vial is not None:
                _, waste, _, _ = vial_routes(ctx, vial)
                clean_shared_line(b, waste)
                plan.notes.append("mixer and shared line rinsed and dried")
            elif kind == "density" and cfg.densimeter is not None:
                instrument = density_instrument(cfg)
                drain(b, instrument, cfg.settings.waste_nodes[0])
                clean(b, instrument)
                plan.notes.append("cell and lines drained and cleaned")
        except (AsabError, ValueError) as exc:
            b = ctx.builder(ledger)  # nothing of the half-planned rinse is kept
            b.enter(Phase.RECOVER)
            plan.notes.clear()
            problems.append(f"{'rinse/dry' if kind == 'vial' else 'drain/clean'}: {exc}")
        b.add(ForgetLines(phase=b.phase))
    b.enter(Phase.PARK)
    b.add(MakeSafe(phase=b.phase))
    return _finish(b, plan, ledger, check=False), problems


__all__ = [
    "MEASURE_ESTIMATE",
    "BenchContext",
    "ConsumableError",
    "common_line_volume",
    "density_instrument",
    "density_sink",
    "first_portion_volume",
    "formulate",
    "mix_inputs",
    "other_inlets",
    "plan_clean",
    "plan_density",
    "plan_drain",
    "plan_first_vial",
    "plan_mix",
    "plan_prime",
    "plan_recovery",
    "plan_vial",
    "sample_volume",
    "shared_line_volume",
    "stock_aware",
    "vial_routes",
]
