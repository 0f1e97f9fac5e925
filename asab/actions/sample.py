"""The named actions of a density/viscosity job: prime, mix, deliver, measure, drain, clean.

Volumes follow the tubing's dead volumes (``TubingGraph.route(...).dead_volume``) and the
factors in :class:`asab.config.BenchSettings`, so a differently plumbed bench gets the right
amounts without code changes.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from asab.actions.bench import Bench
from asab.actions.fluidics import Ledger, empty, fill, motion, push
from asab.config import Instrument
from asab.drivers.base import DensityViscosityResult
from asab.errors import DeviceError
from asab.tubing import Route

log = logging.getLogger(__name__)


class PushRecord(BaseModel):
    """One multi-pump push: which pumps at which flows, how much, where."""

    model_config = ConfigDict(extra="forbid")
    purpose: str
    flows: dict[str, float] = Field(description="pump → mL/s")
    volume: float = Field(description="mL pushed in total")
    valve_settings: dict[str, int]
    sink: str
    shared_line: float = Field(default=0.0, description=(
        "mL of line from the mixer outlet shared with the sample route (it holds mixture "
        "when the sample is switched to the cell)"))


def _instrument_route_nodes(bench: Bench, instrument: Instrument) -> list[str]:
    return [bench.config.settings.mixer_outlet, instrument.inlet, instrument.outlet]


def _other_inlets(bench: Bench, keep: Instrument | None = None) -> list[str]:
    """Instrument inlets a route must not pass through (every cell but ``keep``)."""
    return [i.inlet for i in bench.config.instruments if keep is None or i.name != keep.name]


def prime_volume(bench: Bench, pump: str, source: str) -> float:
    """mL drawn to prime ``pump`` from ``source`` (and sent to waste): 3 × the line's dead
    volume + 0.2 mL, at most half the syringe."""
    line = bench.graph.route(source, bench.config.pump(pump).node).dead_volume
    return min(3.0 * line + 0.2, 0.5 * bench.pumps[pump].volume_max)


def prime(bench: Bench, pumps: Mapping[str, str], ledger: Ledger) -> list[str]:
    """Fill the line from each source to its pump with liquid, sending the gas to waste.

    Args:
        pumps: pump name → source node (reservoir or solvent) it draws from.

    Returns:
        The pumps primed now (pumps primed earlier on this bench are skipped).
    """
    waste = bench.config.settings.waste_nodes[0]
    done = []
    for pump, source in sorted(pumps.items()):
        if pump in bench.primed:
            continue
        empty(bench, pump, waste, ledger)
        fill(bench, pump, source, prime_volume(bench, pump, source), ledger)
        empty(bench, pump, waste, ledger)
        bench.primed.add(pump)
        done.append(pump)
    return done


def first_portion_volume(bench: Bench, flows: Mapping[str, float], instrument: Instrument) -> float:
    """mL for the first portion: ``first_portion_factor`` × (total flow × the transit time of
    the slowest inlet line not yet wet with its stock + the line shared with the sample
    route, which holds whatever came before)."""
    s = bench.config.settings
    dry = [p for p in flows if p not in bench.wet_lines]
    transit = max((bench.graph.route(bench.config.pump(p).node, s.mixer_outlet).dead_volume
                   / flows[p] for p in dry), default=0.0)
    return s.first_portion_factor * (transit * sum(flows.values()) + _shared(bench, instrument))


def _shared(bench: Bench, instrument: Instrument) -> float:
    s = bench.config.settings
    return shared_line_volume(
        bench, bench.graph.route(s.mixer_outlet, s.waste_nodes[0], avoid=_other_inlets(bench)),
        bench.graph.route(s.mixer_outlet, instrument.inlet, avoid=_other_inlets(bench, instrument)))


def first_portion(bench: Bench, flows: Mapping[str, float], sources: Mapping[str, str],
                  instrument: Instrument, ledger: Ledger) -> PushRecord:
    """Mix: run the stocks at their flows through the mixer to waste
    (:func:`first_portion_volume`), so the sample route starts with the mixture."""
    s = bench.config.settings
    waste = s.waste_nodes[0]
    routes = {p: bench.graph.route(bench.config.pump(p).node, waste, via=[s.mixer_outlet],
                                   avoid=_other_inlets(bench)) for p in flows}
    volume = first_portion_volume(bench, flows, instrument)
    push(bench, flows, volume, routes, sources, ledger, "first portion to waste")
    bench.wet_lines.update(flows)
    rec = _record("first portion to waste", flows, volume, routes, waste)
    rec.shared_line = _shared(bench, instrument)
    return rec


def shared_line_volume(bench: Bench, a: Route, b: Route) -> float:
    """Dead volume (mL) of the common beginning of two routes that start at the same node."""
    n = 0
    while n + 1 < min(len(a.nodes), len(b.nodes)) and a.nodes[n + 1] == b.nodes[n + 1]:
        n += 1
    return bench.graph.route(a.nodes[0], a.nodes[n]).dead_volume if n else 0.0


def sample_volume(bench: Bench, instrument: Instrument) -> float:
    """mL pushed through the cell: ``flush_factor`` × (dead volume mixer outlet → cell inlet
    + the cell's own volume, taken as the larger of its edge's dead volume and the
    instrument's ``measuring_volume``)."""
    s = bench.config.settings
    line = bench.graph.route(s.mixer_outlet, instrument.inlet,
                             avoid=_other_inlets(bench, instrument)).dead_volume
    cell = bench.graph.route(instrument.inlet, instrument.outlet).dead_volume
    return s.flush_factor * (line + max(cell, instrument.measuring_volume))


def deliver(bench: Bench, flows: Mapping[str, float], sources: Mapping[str, str],
            instrument: Instrument, sink: str, ledger: Ledger) -> PushRecord:
    """Push the mixture through ``instrument``'s cell into ``sink`` (:func:`sample_volume`),
    so the cell holds only sample."""
    nodes = _instrument_route_nodes(bench, instrument)
    avoid = _other_inlets(bench, keep=instrument)
    routes = {p: bench.graph.route(bench.config.pump(p).node, sink, via=nodes, avoid=avoid)
              for p in flows}
    volume = sample_volume(bench, instrument)
    push(bench, flows, volume, routes, sources, ledger, f"sample through {instrument.name}")
    return _record(f"sample through {instrument.name}", flows, volume, routes, sink)


def _through_cell(bench: Bench, pump: str, source: str, instrument: Instrument, sink: str,
                  factor: float, purpose: str, ledger: Ledger) -> PushRecord:
    """Push ``factor`` × the dead volume mixer outlet → cell → ``sink`` from one pump that
    refills from ``source``, at ``settings.gas_flow``."""
    s = bench.config.settings
    nodes = _instrument_route_nodes(bench, instrument)
    route = bench.graph.route(bench.config.pump(pump).node, sink, via=nodes,
                              avoid=_other_inlets(bench, keep=instrument))
    volume = factor * bench.graph.route(nodes[0], sink, via=nodes[1:]).dead_volume
    flow = min(s.gas_flow, bench.pumps[pump].flow_max)
    push(bench, {pump: flow}, volume, {pump: route}, {pump: source}, ledger, purpose)
    return _record(purpose, {pump: flow}, volume, {pump: route}, sink)


def drain(bench: Bench, instrument: Instrument, sink: str, ledger: Ledger) -> PushRecord:
    """Blow gas from the mixer through the cell into ``sink`` (``drain_factor`` × the route's
    dead volume), after emptying the gas pump so that only gas follows the liquid."""
    s = bench.config.settings
    pump = s.gas_pump or s.solvent_pump
    empty(bench, pump, s.waste_nodes[0], ledger)
    return _through_cell(bench, pump, s.gas_nodes[0], instrument, sink, s.drain_factor,
                         "drain with gas", ledger)


def clean(bench: Bench, instrument: Instrument, ledger: Ledger) -> list[PushRecord]:
    """Rinse mixer, lines and cell with the cleaning solvent into waste (``clean_factor`` ×
    the route's dead volume), then drain with gas."""
    s = bench.config.settings
    waste = s.waste_nodes[0]
    prime(bench, {s.solvent_pump: s.solvent_node}, ledger)
    empty(bench, s.solvent_pump, waste, ledger)  # it may hold gas from the last drain
    rinse = _through_cell(bench, s.solvent_pump, s.solvent_node, instrument, waste,
                          s.clean_factor, "clean with solvent", ledger)
    return [rinse, drain(bench, instrument, waste, ledger)]


def measure(bench: Bench, sample: str) -> DensityViscosityResult:
    """Measure what is in the densimeter/viscometer cell (repetitions per the method).

    Raises:
        DeviceError: no densimeter configured, or the instrument refused.
        TransportTimeout: no complete export in time.
    """
    if bench.densimeter is None:
        raise DeviceError("densimeter", "not configured")
    with motion(bench):
        return bench.densimeter.measure(sample)


class Summary(BaseModel):
    """Mean and spread of the valid values of one quantity."""

    model_config = ConfigDict(extra="forbid")
    values: list[float | None]
    valid: list[bool]
    mean: float | None
    stdev: float | None
    n_valid: int


def summarize(values: list[float | None], valid: list[bool]) -> Summary:
    """Mean and sample standard deviation over the valid, present values."""
    good = [v for v, ok in zip(values, valid) if ok and v is not None]
    mean = statistics.fmean(good) if good else None
    stdev = statistics.stdev(good) if len(good) > 1 else None
    return Summary(values=values, valid=valid, mean=mean, stdev=stdev, n_valid=len(good))


def _record(purpose: str, flows: Mapping[str, float], volume: float, routes, sink: str) -> PushRecord:
    settings: dict[str, int] = {}
    for r in routes.values():
        settings.update(r.valve_settings)
    return PushRecord(purpose=purpose, flows=dict(flows), volume=volume,
                      valve_settings=settings, sink=sink)
