"""The ``electrolyte``/``flow`` action: formulate an electrolyte and deliver a volume into a vial.

Steps (:func:`run_flow_job`): plan the stock flows for the requested composition; pick the
first free vial of ``settings.vial_nodes`` (:class:`~asab.actions.vial_state.VialRegistry`)
and check the stocks — all before any liquid moves; claim the vial; prime; send a first
portion of the mixture to the waste whose route from the mixer outlet shares the longest line
with the vial route (so that line holds only mixture); push ``volume + U`` into the vial, where
U is the dead volume of the vial's own branch (it holds gas, vented in the vial, and keeps U of
mixture afterwards); then rinse the mixer and the shared line to that waste with solvent and
blow them dry with gas. The vial's branch is never rinsed (solvent would end up in the vial).

Pumps are stopped on every error (:func:`~asab.actions.fluidics.motion`). After a failure
(:func:`recover_flow`) the shared line is rinsed and dried once liquid has moved, and the bench
is made safe as after a density job (:func:`asab.actions.safety.make_safe`: pumps confirmed
stopped, every reservoir closed off by parking valves); if any of that fails the bench is
marked out of service.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from asab.actions.bench import Bench
from asab.actions.fluidics import Ledger, empty, push
from asab.actions.job import RunRecord, check_stock, stepper
from asab.actions.safety import conclude_recovery
from asab.actions.sample import PushRecord, prime
from asab.actions.vial_state import VialOccupant, VialRegistry
from asab.config import BenchConfig
from asab.errors import (
    BelowResolutionError,
    DeviceError,
    FormulationError,
    NotMakeableError,
    RequestError,
    RoutingError,
    describe,
)
from asab.formulation import FormulationPlan, by_name, plan_formulation
from asab.requests import FlowJob  # the validated request; re-exported here
from asab.tubing import Route

log = logging.getLogger(__name__)

DEFAULT_VIAL_CAPACITY = 20.0
"""mL a vial takes when the configuration gives no ``settings.vial_capacity``: a 20 mL
vial assumed (the 2023 bench's vial size is not recorded in the source data)."""


def _now() -> str:
    """Wall-clock now, ISO 8601 UTC (milliseconds)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class NoFreeVialError(RequestError):
    """Every configured vial holds an electrolyte: the request cannot be served now."""


class FlowRecord(RunRecord):
    """Everything about one delivery into a vial (the fields of
    :class:`~asab.actions.job.RunRecord` plus the volumes and the vial). Compositions by
    chemical name."""

    volume_requested: float = Field(description="mL")
    volume_pushed: float | None = Field(default=None, description="mL pushed towards the vial")
    volume_delivered: float | None = Field(
        default=None, description="mL in the vial (None: unknown after a failure)")
    delivered: bool = Field(default=False, description="the whole volume reached the vial")
    vial: str | None = Field(default=None, description="vial node")
    waste: str | None = Field(default=None, description="waste node of the first portion")
    vial_branch: float | None = Field(default=None, description="mL of the vial's own branch")


class VialPlan(BaseModel):
    """Where the liquid goes: the vial, the waste for the first portion and the volumes."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    vial: str
    waste: str
    vial_route: Route
    waste_route: Route
    shared: float = Field(description="mL of line the two routes share from the mixer outlet")
    branch: float = Field(description="mL of the vial route not shared (the vial's branch)")


def vial_capacity(config: BenchConfig) -> float:
    """mL one vial takes: ``settings.vial_capacity`` if configured, else
    :data:`DEFAULT_VIAL_CAPACITY`."""
    return float(getattr(config.settings, "vial_capacity", None) or DEFAULT_VIAL_CAPACITY)


def instrument_inlets(config: BenchConfig) -> list[str]:
    """Every instrument inlet: a vial or waste route must not pass a measuring cell."""
    return [i.inlet for i in config.instruments]


def plan_vial(bench: Bench, vial: str) -> VialPlan:
    """Routes mixer outlet → ``vial`` and → the waste sharing the longest line with it.

    Raises:
        RoutingError: no route to the vial, or to any waste.
    """
    s, avoid = bench.config.settings, instrument_inlets(bench.config)
    to_vial = bench.graph.route(s.mixer_outlet, vial, avoid=avoid)
    best: tuple[float, str, Route] | None = None
    for waste in s.waste_nodes:
        try:
            r = bench.graph.route(s.mixer_outlet, waste, avoid=avoid)
        except RoutingError:
            continue
        shared = common_line_volume(bench.config, r, to_vial)
        if best is None or shared > best[0]:
            best = (shared, waste, r)
    if best is None:
        raise RoutingError(f"no route from {s.mixer_outlet} to any waste")
    shared, waste, to_waste = best
    return VialPlan(vial=vial, waste=waste, vial_route=to_vial, waste_route=to_waste,
                    shared=shared, branch=to_vial.dead_volume - shared)


def common_line_volume(config: BenchConfig, a: Route, b: Route) -> float:
    """mL of the tubing two routes share from their common start (the dead volumes of the
    leading edges they have in common, by edge label)."""
    dead = {e.label: e.dead_volume for e in config.tubing.edges}
    shared = []
    for ea, eb in zip(a.edges, b.edges):
        if ea != eb:
            break
        shared.append(dead[ea])
    return math.fsum(shared)


def first_portion_volume(bench: Bench, flows: dict[str, float], vp: VialPlan) -> float:
    """mL of the first portion: ``first_portion_factor`` × (total flow × transit time of the
    slowest inlet line not yet wet + the line shared by the waste and vial routes)."""
    s = bench.config.settings
    dry = [p for p in flows if p not in bench.wet_lines]
    transit = max((bench.graph.route(bench.config.pump(p).node, s.mixer_outlet).dead_volume
                   / flows[p] for p in dry), default=0.0)
    return s.first_portion_factor * (transit * sum(flows.values()) + vp.shared)


def stock_needed(bench: Bench, plan: FormulationPlan, vp: VialPlan) -> float:
    """mL of mixture the job draws: first portion + volume + the vial branch."""
    flows = {plan.pumps[n]: f for n, f in plan.flows.items() if f > 0}
    return first_portion_volume(bench, flows, vp) + plan.total_volume + vp.branch


def new_flow_record(bench: Bench, job: FlowJob, job_id: str) -> FlowRecord:
    """An empty record (status ``failed`` until the job says otherwise)."""
    return FlowRecord(job_id=job_id, request_id=job.request_id, bench=bench.config.name,
                      started=_now(), volume_requested=job.volume, request=job.raw)


def run_flow_job(bench: Bench, job: FlowJob, job_id: str, vials: VialRegistry, *,
                 policy: Literal["reject", "closest"] | None = None,
                 progress=None) -> FlowRecord:
    """Formulate ``job`` and deliver its volume into a free vial; never raises for job-level
    problems (they end up in the record).

    Args:
        bench: the opened bench.
        job: the validated request.
        job_id: id of this job within the run.
        vials: the vial occupancy (updated: claimed before liquid moves, ``filled`` after).
        policy: not-makeable policy; default ``settings.not_makeable_policy``.
        progress: optional ``progress(step: str)``.

    Returns:
        The record: ``succeeded``; ``rejected`` (not makeable, not deliverable, too much
        volume, not enough stock, no free vial — nothing moved); or ``failed`` (device or
        routing trouble; the vial marked ``failed`` if liquid may have reached it, and the
        bench recovered by :func:`recover_flow` unless it was out of service already).
    """
    rec = new_flow_record(bench, job, job_id)
    refused = bench.out_of_service is not None
    step = stepper(bench, rec, progress)
    rec.requested = by_name(job.formulation, bench.config)
    try:
        _run(bench, job, rec, vials, policy, step)
        rec.status = "succeeded"
    except (FormulationError, RequestError) as exc:
        rec.status, rec.reason, rec.error = "rejected", str(exc), describe(exc)
        if isinstance(exc, NotMakeableError):
            rec.closest, rec.distance = exc.closest, exc.distance
    except Exception as exc:
        log.exception("flow job %s failed", job_id)
        bench.stop_all()
        rec.status, rec.reason, rec.error = "failed", str(exc) or type(exc).__name__, describe(exc)
        _settle_vial(rec, vials)
        if not refused:  # a bench already out of service is not touched
            step("recover")
            rec.recovery = recover_flow(bench, rec)
    rec.bench_seconds = bench.clock.now() - rec.bench_start
    rec.finished = _now()
    return rec


def _run(bench: Bench, job: FlowJob, rec: FlowRecord, vials: VialRegistry, policy, step) -> None:
    cfg = bench.config
    if bench.out_of_service:
        raise DeviceError("bench", "out of service", f"bench out of service: {bench.out_of_service}")
    step("formulate")
    capacity = vial_capacity(cfg)
    if job.volume > capacity:
        raise RequestError(f"volume {job.volume:.3f} mL exceeds the vial capacity "
                           f"{capacity:.3f} mL")
    plan = plan_formulation(cfg, job.formulation, job.volume, policy=policy)
    rec.achieved, rec.distance, rec.flagged = by_name(plan.achieved, cfg), plan.distance, plan.flagged
    if not plan.deliverable:
        raise BelowResolutionError("the pumps cannot deliver this mix: " + "; ".join(plan.notes))
    free = vials.free(cfg)
    if not free:
        raise NoFreeVialError(f"no free vial: all {len(cfg.settings.vial_nodes)} vials "
                              "of this bench are occupied")
    vp = plan_vial(bench, free[0])
    rec.vial, rec.waste, rec.vial_branch = vp.vial, vp.waste, vp.branch
    flows = {plan.pumps[n]: f for n, f in plan.flows.items() if f > 0}
    shares = {n: v / plan.total_volume for n, v in plan.stock_volumes.items() if v > 0}
    check_stock(bench, shares, stock_needed(bench, plan, vp))
    sources = {plan.pumps[n]: cfg.stock(n).reservoir for n in shares}
    ledger = Ledger()
    rec.routes = ledger.routes
    vials.claim(VialOccupant(vial=vp.vial, request_id=job.request_id, job_id=rec.job_id,
                             composition=dict(rec.achieved), time=_now()))
    try:
        _wet_work(bench, rec, vials, flows, sources, vp, ledger, step)
    finally:
        mixed = sum(p.volume for p in rec.pushes
                    if p.purpose.startswith(("first portion", "deliver")))
        rec.stock_volumes = {n: s * mixed for n, s in shares.items()}
        by_source = {st.reservoir: st.name for st in cfg.stocks}
        rec.stock_drawn = {by_source[n]: v for n, v in ledger.drawn.items() if n in by_source}


def _wet_work(bench: Bench, rec: FlowRecord, vials: VialRegistry, flows, sources,
              vp: VialPlan, ledger: Ledger, step) -> None:
    """Prime → first portion to waste → volume into the vial → rinse and dry the lines."""
    cfg = bench.config
    step("prime")
    prime(bench, sources, ledger)
    step("mix")
    routes = {p: bench.graph.route(cfg.pump(p).node, vp.waste, via=[cfg.settings.mixer_outlet],
                                   avoid=instrument_inlets(cfg)) for p in flows}
    volume = first_portion_volume(bench, flows, vp)
    push(bench, flows, volume, routes, sources, ledger, "first portion to waste")
    bench.wet_lines.update(flows)
    rec.pushes.append(_push_record("first portion to waste", flows, volume, routes, vp.waste))
    step("deliver")
    routes = {p: bench.graph.route(cfg.pump(p).node, vp.vial, via=[cfg.settings.mixer_outlet],
                                   avoid=instrument_inlets(cfg)) for p in flows}
    rec.volume_pushed = rec.volume_requested + vp.branch
    levels = {p: bench.pumps[p].fill_level() for p in flows}
    drawn = dict(ledger.drawn)
    try:
        push(bench, flows, rec.volume_pushed, routes, sources, ledger, f"deliver into {vp.vial}")
    except BaseException:
        rec.volume_delivered = _delivered_so_far(bench, flows, sources, levels, drawn, ledger, vp)
        raise
    rec.volume_delivered, rec.delivered = rec.volume_requested, True
    rec.pushes.append(_push_record(f"deliver into {vp.vial}", flows, rec.volume_pushed, routes,
                                   vp.vial))
    vials.update(vp.vial, status="filled", volume=rec.volume_delivered, time=_now())
    step("clean")
    rec.pushes.extend(clean_shared_line(bench, vp, ledger))


def _delivered_so_far(bench: Bench, flows, sources, levels, drawn, ledger: Ledger,
                      vp: VialPlan) -> float | None:
    """mL that reached the vial before a failure, from the syringes' bookkeeping: each pump
    dispensed (fill level before + drawn since − fill level now); the first ``branch`` mL
    pushed only vented gas. ``None`` when a pump cannot be read."""
    try:
        dispensed = sum(levels[p] + ledger.drawn.get(sources[p], 0.0) - drawn.get(sources[p], 0.0)
                        - bench.pumps[p].fill_level() for p in flows)
    except Exception:
        log.exception("cannot read the syringes after a failed delivery")
        return None
    return max(0.0, dispensed - vp.branch)


def clean_shared_line(bench: Bench, vp: VialPlan, ledger: Ledger) -> list[PushRecord]:
    """Rinse mixer outlet → waste (the line shared with the vial route) with solvent
    (``clean_factor`` × its dead volume), then blow it dry with gas (``drain_factor`` ×)."""
    s = bench.config.settings
    gas_pump = s.gas_pump or s.solvent_pump
    prime(bench, {s.solvent_pump: s.solvent_node}, ledger)
    empty(bench, s.solvent_pump, vp.waste, ledger)
    line = vp.waste_route.dead_volume
    out = [_flush(bench, s.solvent_pump, s.solvent_node, vp.waste, s.clean_factor * line,
                  "clean with solvent", ledger)]
    empty(bench, gas_pump, vp.waste, ledger)
    out.append(_flush(bench, gas_pump, s.gas_nodes[0], vp.waste, s.drain_factor * line,
                      "drain with gas", ledger))
    return out


def _flush(bench: Bench, pump: str, source: str, sink: str, volume: float, purpose: str,
           ledger: Ledger) -> PushRecord:
    cfg = bench.config
    route = bench.graph.route(cfg.pump(pump).node, sink, via=[cfg.settings.mixer_outlet],
                              avoid=instrument_inlets(cfg))
    flow = min(cfg.settings.gas_flow, bench.pumps[pump].flow_max)
    push(bench, {pump: flow}, volume, {pump: route}, {pump: source}, ledger, purpose)
    return _push_record(purpose, {pump: flow}, volume, {pump: route}, sink)


def _settle_vial(rec: FlowRecord, vials: VialRegistry) -> None:
    """After a failure: free a claimed vial nothing was pushed towards, else mark it failed."""
    occupant = vials.occupied().get(rec.vial or "")
    if occupant is not None and occupant.job_id == rec.job_id and occupant.status == "filling":
        if rec.volume_pushed is None:  # nothing was pushed towards the vial
            vials.release(rec.vial)
            rec.volume_delivered = 0.0
        else:
            vials.update(rec.vial, status="failed", volume=rec.volume_delivered, time=_now())


def recover_flow(bench: Bench, rec: FlowRecord) -> str:
    """After a failed flow job: rinse and dry the mixer and the line shared with the vial route
    (:func:`clean_shared_line`, once liquid has moved), then make the bench safe
    (:func:`asab.actions.safety.make_safe`: every pump confirmed stopped, every valve that
    joins a reservoir past its port parked, no reservoir joined to a waste).

    Once liquid has moved the lines' state is unknown: every pump is primed again and every
    mixing line counts as dry (as after a density job, :func:`asab.actions.job.recover`). The
    vial's branch is not rinsed (solvent would end up in the vial).

    Args:
        bench: the bench the job failed on.
        rec: the failed job's record (its ``vial``, ``waste`` and ``steps`` say what moved).

    Returns:
        What was done, e.g. ``"mixer and shared line rinsed and dried; pumps stopped; valves
        parked: none needed"``. If any step failed the bench is marked out of service
        (``bench.out_of_service``) and that reason is returned.
    """
    problems: list[str] = []
    done = "nothing to rinse"
    moved = any(s.step == "prime" for s in rec.steps)  # liquid moves from the prime on
    if moved and rec.vial is not None:
        try:
            clean_shared_line(bench, plan_vial(bench, rec.vial), Ledger())
            done = "mixer and shared line rinsed and dried"
        except Exception as exc:  # noqa: BLE001 - every failure is a reason to stop the bench
            problems.append(f"rinse/dry: {exc}")
        bench.primed.clear()
        bench.wet_lines.clear()
    return conclude_recovery(bench, done, problems)


def _push_record(purpose: str, flows, volume: float, routes, sink: str) -> PushRecord:
    settings: dict[str, int] = {}
    for r in routes.values():
        settings.update(r.valve_settings)
    return PushRecord(purpose=purpose, flows=dict(flows), volume=volume,
                      valve_settings=settings, sink=sink)

