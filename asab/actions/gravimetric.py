"""Gravimetric verification: dose each stock of a plan onto the balance, weigh, and compute
the composition the weighed masses make, with its standard uncertainty.

Plug-flow rule (why what lands on the pan is the stock being weighed): pushing V mL along a
route moves onto the pan the first V mL of what the route holds ahead of the syringe, then the
syringe's content. If the whole route (pump → mixer → shared line → balance vessel) holds the
stock before *and* after the push, the pan gains exactly V mL of the stock, whatever volumes
the lines have. So before each stock is weighed:

1. its line and the shared line are flushed with it towards a waste that is not on the
   balance (``flush_factor`` × the dead volume the balance route shares with the route
   pump → mixer → waste: the old content only has to pass the point where the routes part);
2. the balance-only branch (the part of the balance route not shared with that waste route)
   is pre-filled with it: ``flush_factor`` × the branch's dead volume is pushed onto the pan,
   carrying the branch's old content (the previous stock, gas) onto the pan *before* taring;
3. the balance is tared (zero reading), the planned volume pushed and a stable mass read.

Afterwards the balance route is blown empty with gas (:func:`drain_balance_route`), leaving it
as a job's drain leaves its route: a later job's weighing check must not find verification
liquid in the tail of the line to the balance.

Routes avoid every instrument cell (no sample cell is wetted by verification).

Uncertainty: each net mass W_j gets u(W_j) from the balance (:func:`net_mass_uncertainty`:
readability and repeatability); the mole fractions x = n/Σn with n_i = Σ_j W_j m_ij/(m_j M_i)
get u(x_k)² = Σ (∂x_k/∂q)² u(q)² over q ∈ {W_j, m_ij, m_j} (GUM, JCGM 100:2008, eq. 10, first
order, inputs uncorrelated; stock masses and their uncertainties from stockSolutions.csv),
computed by :func:`asab.formulation.achieved_from_masses`.
"""

from __future__ import annotations

import logging
import math
import statistics

from pydantic import BaseModel, ConfigDict, Field

from asab.actions.bench import Bench
from asab.actions.fluidics import MoveLog, builder, empty, motion, push, run_steps
from asab.errors import Cause, DeviceError
from asab.formulation import FormulationPlan, achieved_from_masses, composition_distance
from asab.ledger.liquid import GAS, UNKNOWN, add
from asab.ledger.model import mass_of
from asab.plan.carryover import RESIDUE_MODEL_SHARE
from asab.plan.planner import shared_line_volume
from asab.plan.steps import Purpose
from asab.tubing import Route

log = logging.getLogger(__name__)

READS = 3
"""Stable readings taken after taring and after each dose; means give the net mass, the
spread the repeatability."""

REPEATABILITY_FLOOR = 1.0
"""Lowest repeatability (standard deviation) assumed, in readability digits: the Entris II
analytical models (0.1 mg) specify a repeatability of about ±0.1 mg (Sartorius Entris II data
sheet); the simulated balance has σ = 0.05 mg before rounding."""


class Dose(BaseModel):
    """One stock dosed onto the balance and weighed."""

    model_config = ConfigDict(extra="forbid")
    stock: str
    pump: str
    volume: float = Field(description="mL dosed (wanted; the pump's delivery factor applied)")
    zero: list[float] = Field(description="g, stable readings after taring")
    readings: list[float] = Field(description="g, stable readings after the dose")
    mass: float = Field(description="g, net: mean(readings) − mean(zero)")
    mass_uncertainty: float = Field(description="g, standard uncertainty u(W) of the net mass")
    density: float = Field(description="g/cm³, the stock's configured density")
    volume_weighed: float = Field(description="mL = mass / density")
    relative_deviation: float = Field(description=(
        "(mass − mass_expected) / mass_expected: the weighed against the predicted arrival"))
    arrived: dict[str, float] = Field(default_factory=dict, description=(
        "origin → mL the bench ledger predicts reached the pan with the dose: the dosed stock "
        "and what the lines' wall films exchanged with it (asab.ledger.residue)"))
    mass_expected: float | None = Field(default=None, description=(
        "g of ``arrived`` at the configured densities"))
    flush_volume: float = Field(description="mL flushed to the waste before dosing")
    prefill_volume: float = Field(description="mL pushed onto the pan before taring")


class GravimetricRecord(BaseModel):
    """Result of :func:`verify_formulation` (compositions keyed by InChIKey)."""

    model_config = ConfigDict(extra="forbid")
    vessel: str = Field(description="tubing node on the balance pan")
    waste: str = Field(description="waste (not on the balance) the lines were flushed into")
    readability: float = Field(description="g")
    planned: dict[str, float] = Field(description="composition of the planned volumes")
    predicted: dict[str, float] | None = Field(default=None, description=(
        "composition the bench ledger predicts on the pan: the planned volumes and what the "
        "lines' wall films exchanged between the doses (carry-over)"))
    predicted_uncertainty: dict[str, float] | None = Field(default=None, description=(
        "standard uncertainty of ``predicted``: RESIDUE_MODEL_SHARE × its deviation from "
        "``planned`` (asab.plan.carryover)"))
    achieved: dict[str, float] = Field(description=(
        "composition of the weighed masses (each dose's mass shared among the stocks the "
        "ledger predicts it carried)"))
    uncertainty: dict[str, float] = Field(description="standard uncertainty of each fraction")
    distance: float = Field(description=(
        "Euclidean distance predicted (else planned) ↔ achieved"))
    doses: list[Dose]
    short: list[str] = Field(default_factory=list, description=(
        "stocks whose weighed volume fell short of the dosed one by more than the tolerance "
        "(an empty reservoir, gas in the line, a leak)"))
    tolerance: float = Field(description="relative volume tolerance used for `short`")
    routes: list[dict] = Field(default_factory=list, description="every route used")
    drawn: dict[str, float] = Field(default_factory=dict, description="source node → mL drawn")

    @property
    def ok(self) -> bool:
        """True when no stock was short."""
        return not self.short

    def agrees(self, coverage: float = 2.0) -> bool:
        """True when every |achieved − predicted| (else − planned) ≤ ``coverage`` × its
        standard uncertainty: the pumps delivered what the ledger expected."""
        ref = self.predicted if self.predicted is not None else self.planned
        u_ref = self.predicted_uncertainty or {}
        return all(abs(self.achieved[k] - ref.get(k, 0.0))
                   <= coverage * math.hypot(u, u_ref.get(k, 0.0))
                   for k, u in self.uncertainty.items())


def balance_routes(bench: Bench, pump: str) -> tuple[Route, Route, float]:
    """The routes used to weigh what ``pump`` delivers.

    Returns:
        ``(to_waste, to_balance, shared)``: pump → mixer outlet → first waste off the balance,
        pump → mixer outlet → balance vessel (both avoiding every instrument inlet), and the
        dead volume (mL) of their common beginning.

    Raises:
        DeviceError: no balance configured. RoutingError: no such route.
    """
    cfg = bench.config
    if cfg.balance is None or bench.balance is None:
        raise DeviceError("balance", Cause.NOT_CONFIGURED, "this bench has no balance")
    s, node = cfg.settings, cfg.pump(pump).node
    avoid = [i.inlet for i in cfg.instruments]
    waste = _waste(bench)
    to_waste = bench.graph.route(node, waste, via=[s.mixer_outlet], avoid=avoid)
    to_balance = bench.graph.route(node, cfg.balance.vessel, via=[s.mixer_outlet], avoid=avoid)
    return to_waste, to_balance, shared_line_volume(bench.graph, to_waste, to_balance)


def wet_balance_route(bench: Bench, pump: str, source: str, ledger: MoveLog,
                      flow: float | None = None) -> tuple[Route, float, float]:
    """Fill the whole route ``pump`` → balance vessel with the liquid ``pump`` draws.

    Steps 1–2 of the module's rule: prime, flush to waste, pre-fill the balance branch (that
    last push lands on the pan; tare afterwards).

    Returns:
        ``(to_balance, flushed, prefilled)``: the balance route and the mL pushed in each step.
    """
    s = bench.config.settings
    flow = min(flow or s.gas_flow, bench.pumps[pump].flow_max)
    b = builder(bench)
    b.prime({pump: source})
    run_steps(bench, b.steps, ledger)
    to_waste, to_balance, shared = balance_routes(bench, pump)
    flushed = s.flush_factor * shared
    push(bench, {pump: flow}, flushed, {pump: to_waste}, {pump: source}, ledger,
         Purpose.FLUSH)
    prefilled = s.flush_factor * max(to_balance.dead_volume - shared, 0.0)
    if prefilled > 0:
        push(bench, {pump: flow}, prefilled, {pump: to_balance}, {pump: source}, ledger,
             Purpose.PREFILL)
    return to_balance, flushed, prefilled


def drain_balance_route(bench: Bench, ledger: MoveLog) -> Route:
    """Blow gas from the gas pump through the mixer and the balance route onto the pan
    (``drain_factor`` × the route's dead volume from the mixer outlet), after emptying the gas
    pump to the waste so that only gas follows the liquid.

    Returns:
        The route the gas took.
    """
    s = bench.config.settings
    pump = s.gas_pump or s.solvent_pump
    _, route, _ = balance_routes(bench, pump)
    tail = bench.graph.route(s.mixer_outlet, bench.config.balance.vessel,
                             avoid=[i.inlet for i in bench.config.instruments])
    empty(bench, pump, _waste(bench), ledger)
    flow = min(s.gas_flow, bench.pumps[pump].flow_max)
    push(bench, {pump: flow}, s.drain_factor * tail.dead_volume, {pump: route},
         {pump: s.gas_nodes[0]}, ledger, Purpose.DRAIN)
    return route


def read_mean(bench: Bench, reads: int) -> list[float]:
    """``reads`` (≥ 1) stable readings of the balance, g."""
    with motion(bench):
        return [bench.balance.read(stable=True).value for _ in range(max(1, reads))]


def net_mass_uncertainty(zero: list[float], loaded: list[float], readability: float) -> float:
    """Standard uncertainty (g) of the net mass mean(loaded) − mean(zero).

    Each reading: u² = δ²/12 + σ² — rounding to the readability δ (rectangular, GUM F.2.2.1)
    plus the balance's repeatability σ, taken as the larger of the pooled sample standard
    deviation of both series and :data:`REPEATABILITY_FLOOR` × δ (a few identical readings
    must not claim σ = 0). Averaging n readings reduces the random part σ²/n, but not the
    rounding: repeated identical readings are rounded the same way, so that part is fully
    correlated within a series (one δ²/12 per series). The two means add:
    u(W)² = 2·δ²/12 + σ²·(1/n_zero + 1/n_loaded).
    """
    dof = len(zero) + len(loaded) - 2
    pooled = 0.0
    if dof > 0:
        ss = sum((v - statistics.fmean(zero)) ** 2 for v in zero)
        ss += sum((v - statistics.fmean(loaded)) ** 2 for v in loaded)
        pooled = math.sqrt(ss / dof)
    sigma = max(pooled, REPEATABILITY_FLOOR * readability)
    rounding = readability**2 / 12.0
    return math.sqrt(2.0 * rounding + sigma**2 * (1.0 / len(zero) + 1.0 / len(loaded)))


def dose_and_weigh(bench: Bench, pump: str, source: str, route: Route, volume: float,
                   ledger: MoveLog, reads: int = READS, flow: float | None = None,
                   ) -> tuple[list[float], list[float], float]:
    """Tare and read, push ``volume`` mL from ``pump`` along ``route`` (full of its liquid)
    onto the pan at ``flow`` (default ``settings.total_flow``), read again.

    Returns:
        ``(zero, loaded, u_mass)``: ``reads`` stable readings after taring and after the dose
        (g), and the standard uncertainty of the net mass (:func:`net_mass_uncertainty`).
    """
    flow = min(flow or bench.config.settings.total_flow, bench.pumps[pump].flow_max)
    with motion(bench):
        bench.balance.tare()
    zero = read_mean(bench, reads)
    push(bench, {pump: flow}, volume, {pump: route}, {pump: source}, ledger, Purpose.DOSE)
    loaded = read_mean(bench, reads)
    return zero, loaded, net_mass_uncertainty(zero, loaded, bench.config.balance.readability)


def verify_formulation(bench: Bench, plan: FormulationPlan, volume: float | None = None, *,
                       reads: int = READS, tolerance: float | None = None) -> GravimetricRecord:
    """Dose each stock of ``plan`` in turn onto the balance and weigh it.

    Args:
        bench: the opened bench (a balance under ``config.balance.vessel``).
        plan: the formulation; its ``stock_volumes`` (mL) are dosed, scaled to ``volume``.
        volume: mL in total (default ``plan.total_volume``).
        reads: stable readings per dose (≥ 1).
        tolerance: relative volume shortfall flagged in ``short`` (default
            ``settings.weighing_tolerance``).

    Returns:
        The record: masses, volumes, the composition of the weighed masses with standard
        uncertainties (:func:`asab.formulation.achieved_from_masses`, fed the per-dose u(W) of
        :func:`dose_and_weigh`), routes and stock drawn. A short dose does not raise: it is
        listed in ``short`` (the caller decides).

    Raises:
        DeviceError: no balance; device problems (pumps stopped). RoutingError: no route.
    """
    cfg = bench.config
    scale = 1.0 if volume is None else volume / plan.total_volume
    tol = cfg.settings.weighing_tolerance if tolerance is None else tolerance
    ledger, doses = MoveLog(), []
    for name, planned in plan.stock_volumes.items():
        if planned <= 0:
            continue
        doses.append(_dose_stock(bench, name, planned * scale, ledger, reads))
    drain_balance_route(bench, ledger)
    masses, pan = _stock_masses(bench, doses)
    u_mass = {d.stock: d.mass_uncertainty for d in doses}
    u_mass.update({k: 0.0 for k in masses if k not in u_mass})
    achieved, u = achieved_from_masses(cfg, masses, mass_uncertainty=u_mass)
    predicted = achieved_from_masses(cfg, pan)[0] if pan else None
    u_predicted = None if predicted is None else {
        k: RESIDUE_MODEL_SHARE * abs(v - plan.achieved.get(k, 0.0)) for k, v in predicted.items()}
    short = [f"{d.stock}: weighed {d.volume_weighed:.4f} mL of {d.volume:.4f} mL dosed "
             f"({d.relative_deviation:+.1%})" for d in doses if d.relative_deviation < -tol]
    for line in short:
        log.warning("gravimetric verification short: %s", line)
    return GravimetricRecord(
        vessel=cfg.balance.vessel, waste=_waste(bench), readability=cfg.balance.readability,
        planned=dict(plan.achieved), predicted=predicted, predicted_uncertainty=u_predicted,
        achieved=achieved, uncertainty=u,
        distance=composition_distance(predicted or plan.achieved, achieved), doses=doses,
        short=short,
        tolerance=tol, routes=ledger.routes, drawn=dict(ledger.drawn))


def _dose_stock(bench: Bench, name: str, volume: float, ledger: MoveLog, reads: int) -> Dose:
    stock = bench.config.stock(name)
    route, flushed, prefilled = wet_balance_route(bench, stock.pump, stock.reservoir, ledger)
    before = _on_pan(bench)
    zero, readings, u_mass = dose_and_weigh(bench, stock.pump, stock.reservoir, route, volume,
                                            ledger, reads)
    arrived = {k: v for k, v in add(_on_pan(bench), before, -1.0).items()
               if k != GAS and v > 0}
    if not arrived:  # the ledger does not know: the dose as commanded
        arrived = {name: volume}
    mass = statistics.fmean(readings) - statistics.fmean(zero)
    weighed = mass / stock.density
    expected = mass_of(bench.config, arrived)
    log.info("weighed %s: %.5f g = %.4f mL of %.4f mL (%.5f g expected)", name, mass, weighed,
             volume, expected)
    return Dose(stock=name, pump=stock.pump, volume=volume, zero=zero, readings=readings,
                mass=mass, mass_uncertainty=u_mass, density=stock.density,
                volume_weighed=weighed, relative_deviation=(mass - expected) / expected,
                arrived=arrived, mass_expected=expected,
                flush_volume=flushed, prefill_volume=prefilled)


def _on_pan(bench: Bench) -> dict[str, float]:
    """origin → mL the bench ledger has in the balance vessel."""
    vessel = bench.ledger.current().vessels.get(bench.config.balance.vessel)
    return dict(vessel.content) if vessel is not None else {}


def _carried(bench: Bench, dose: Dose) -> dict[str, float]:
    """Stock → g the ledger predicts ``dose`` put on the pan (liquid of unknown origin counts
    as the dosed stock; the cleaning solvent is not a stock and is left out)."""
    cfg = bench.config
    names = {st.name for st in cfg.stocks}
    parts: dict[str, float] = {}
    for origin, v in dose.arrived.items():
        key = dose.stock if origin == UNKNOWN else origin
        if key in names:
            parts[key] = parts.get(key, 0.0) + v * cfg.stock(key).density
    return parts


def _stock_masses(bench: Bench, doses: list[Dose]) -> tuple[dict[str, float], dict[str, float]]:
    """``(weighed, predicted)``: g of each stock on the pan, each dose's weighed mass shared
    among the stocks the ledger predicts it carried (by their predicted masses, so that the
    film a line exchanged with a dose counts as the stock it came from), and the predicted
    masses themselves."""
    weighed: dict[str, float] = {}
    predicted: dict[str, float] = {}
    for d in doses:
        parts = _carried(bench, d)
        total = math.fsum(parts.values())
        for key, m in parts.items():
            weighed[key] = weighed.get(key, 0.0) + max(d.mass, 0.0) * m / total
            predicted[key] = predicted.get(key, 0.0) + m
    return weighed, predicted


def _waste(bench: Bench) -> str:
    """The first waste that is not on the balance (DeviceError when there is none)."""
    vessel = bench.config.balance.vessel
    for waste in bench.config.settings.waste_nodes:
        if waste != vessel:
            return waste
    raise DeviceError("balance", Cause.NO_WASTE, f"every waste is {vessel}, the balance vessel; "
                      "gravimetric verification needs a waste off the balance to flush into")

