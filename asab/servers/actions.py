"""The actions server: formulate (a plan, answered at once) and the long actions as jobs —
prime, mix, deliver, measure, drain, clean, calibrate (a pump, on the balance) — and the
operator's ``POST /bench/reset`` that puts an out-of-service bench back in service.

Mix and deliver plan the composition exactly as ``asab run`` does
(:func:`asab.formulation.plan_formulation`, then the stock check of
:func:`asab.actions.job.check_stock`); a composition outside the makeable region is answered
with 422 naming the closest makeable one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field, StringConstraints

from asab.actions.bench import Bench
from asab.actions.calibration import calibrate_pump
from asab.actions.fluidics import Ledger
from asab.actions.job import check_stock
from asab.actions.sample import (
    PushRecord, clean, deliver, drain, first_portion, first_portion_volume, prime, sample_volume,
)
from asab.config import Instrument
from asab.errors import BelowResolutionError, DeviceError, RequestError
from asab.formulation import by_name, plan_formulation
from asab.formulation.plan import MAX_TOTAL_VOLUME
from asab.servers.common import ServerContext, Strict, lookup, make_app
from asab.servers.densimeter import MeasureRequest, submit_measure
from asab.servers.jobs import RESOURCES, JobHandle, JobInfo

ChemicalKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Composition = Field(min_length=1, max_length=20, description=(
    "chemical name or InChIKey → mole fraction (mol/mol, summing to 1), "
    "e.g. {'LiPF6': 0.07, 'EC': 0.29, 'EMC': 0.64}"))


class FormulateRequest(Strict):
    composition: dict[ChemicalKey, Annotated[float, Field(ge=0, le=1)]] = Composition
    volume: float = Field(default=1.0, gt=0, le=MAX_TOTAL_VOLUME,
                          description="mL of electrolyte to make")
    policy: Literal["reject", "closest"] | None = Field(
        default=None, description="not makeable: reject (422) or aim at the closest; "
        "default settings.not_makeable_policy")


class MixRequest(Strict):
    composition: dict[ChemicalKey, Annotated[float, Field(ge=0, le=1)]] = Composition


class PrimeRequest(Strict):
    pumps: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=32, description="pumps to prime; default every stock pump")


class DrainRequest(Strict):
    sink: str | None = Field(default=None, min_length=1, max_length=100,
                             description="tubing node; default the vessel on the balance")


class CalibrateRequest(Strict):
    pump: str = Field(min_length=1, max_length=64, description="stock or solvent pump")
    volume: float = Field(default=1.0, gt=0, le=10, description="mL dispensed per repeat")
    repeats: int = Field(default=3, ge=1, le=10, description="weighed doses")


class FormulationResponse(BaseModel):
    requested: dict[str, float] = Field(description="name → mole fraction")
    achieved: dict[str, float] = Field(description="name → mole fraction the plan makes")
    distance: float = Field(description="Euclidean distance requested ↔ achieved, mol/mol")
    makeable: bool
    flagged: bool = Field(description="made as the closest composition instead of the request")
    deliverable: bool = Field(description="every flow within its pump's drive limits")
    notes: list[str]
    stock_volumes: dict[str, float] = Field(description="stock → mL")
    flows: dict[str, float] = Field(description="stock → mL/s")
    pumps: dict[str, str] = Field(description="stock → pump")
    total_volume: float = Field(description="mL")


class PushesResult(BaseModel):
    pushes: list[PushRecord]
    primed: list[str] = Field(default_factory=list, description="pumps primed by this job")
    mass: float | None = Field(default=None, description="g on the balance afterwards")
    formulation: FormulationResponse | None = None


@dataclass
class MixPlan:
    formulation: FormulationResponse
    flows: dict[str, float]  # pump → mL/s
    sources: dict[str, str]  # pump → reservoir node
    instrument: Instrument


def formulate(bench: Bench, body: FormulateRequest) -> FormulationResponse:
    """Plan ``body.composition`` (raises NotMakeableError / RequestError → 422)."""
    cfg = bench.config
    plan = plan_formulation(cfg, dict(body.composition), body.volume, policy=body.policy)
    return FormulationResponse(
        requested=by_name(plan.requested, cfg), achieved=by_name(plan.achieved, cfg),
        distance=plan.distance, makeable=plan.makeable, flagged=plan.flagged,
        deliverable=plan.deliverable, notes=list(plan.notes), stock_volumes=plan.stock_volumes,
        flows=plan.flows, pumps=plan.pumps, total_volume=plan.total_volume)


def plan_mix(bench: Bench, composition: dict[str, float]) -> MixPlan:
    """Plan a mix for the densimeter and check that pumps and stocks can deliver it.

    Raises:
        NotMakeableError, RequestError, BelowResolutionError, InsufficientStockError (422),
        DeviceError: no densimeter, or the bench is out of service (409).
    """
    cfg = bench.config
    if cfg.densimeter is None:
        raise HTTPException(404, "this bench has no densimeter")
    if bench.out_of_service:
        raise DeviceError("bench", "out of service", f"bench out of service: {bench.out_of_service}")
    plan = plan_formulation(cfg, composition, 1.0)
    if not plan.deliverable:
        raise BelowResolutionError("the pumps cannot deliver this mix: " + "; ".join(plan.notes))
    flows = {plan.pumps[s]: f for s, f in plan.flows.items() if f > 0}
    sources = {cfg.stock(s).pump: cfg.stock(s).reservoir for s, f in plan.flows.items() if f > 0}
    instrument = cfg.instrument(cfg.densimeter.instrument)
    check_stock(bench, plan.stock_volumes, first_portion_volume(bench, flows, instrument)
                + sample_volume(bench, instrument))
    response = formulate(bench, FormulateRequest(composition=composition))
    return MixPlan(response, flows, sources, instrument)


def _mix_job(bench: Bench, mix: MixPlan, and_deliver: bool):
    def run(job: JobHandle) -> PushesResult:
        ledger = Ledger()
        job.step("prime")
        primed = prime(bench, mix.sources, ledger)
        job.step("mix")
        pushes = [first_portion(bench, mix.flows, mix.sources, mix.instrument, ledger)]
        if and_deliver:
            sink = bench.config.balance.vessel if bench.config.balance else \
                bench.config.settings.waste_nodes[0]
            job.step("tare")
            if bench.balance is not None:
                bench.balance.tare()
            job.step("deliver")
            pushes.append(deliver(bench, mix.flows, mix.sources, mix.instrument, sink, ledger))
        return PushesResult(pushes=pushes, primed=primed, formulation=mix.formulation)
    return run


def _prime_sources(bench: Bench, pumps: list[str] | None) -> dict[str, str]:
    s = bench.config.settings
    table = {st.pump: st.reservoir for st in bench.config.stocks}
    if s.solvent_pump:
        table.setdefault(s.solvent_pump, s.solvent_node)
    if pumps is None:
        return table
    unknown = sorted(set(pumps) - set(table))
    if unknown:
        raise RequestError(f"no stock or solvent pump named {', '.join(unknown)}")
    return {p: table[p] for p in pumps}


def _instrument(bench: Bench) -> Instrument:
    if bench.config.densimeter is None:
        raise HTTPException(404, "this bench has no densimeter")
    return bench.config.instrument(bench.config.densimeter.instrument)


def _mass(bench: Bench, sink: str) -> float | None:
    b = bench.config.balance
    if bench.balance is None or b is None or b.vessel != sink:
        return None
    return bench.balance.read(stable=True).value


def create_actions_app(ctx: ServerContext) -> FastAPI:
    """The actions server for ``ctx.bench``: POST acts (long ones return a job), GET reads."""
    app = make_app(ctx, "actions", "Named actions on one asab bench: formulate, prime, mix, "
                   "deliver, measure, drain, clean, calibrate (pumps).")
    bench, jobs = ctx.bench, ctx.jobs

    @app.post("/formulate", tags=["actions"])
    def post_formulate(body: FormulateRequest) -> FormulationResponse:
        """Plan stock volumes and flows (nothing moves). Not makeable: 422 with the closest."""
        return formulate(bench, body)

    @app.post("/prime", tags=["actions"], status_code=202)
    def post_prime(body: PrimeRequest) -> JobInfo:
        """Prime reservoir lines (pumps primed earlier are skipped)."""
        sources = _prime_sources(bench, body.pumps)

        def run(job: JobHandle) -> PushesResult:
            return PushesResult(pushes=[], primed=prime(bench, sources, Ledger()))
        return jobs.submit("prime", run, resources=RESOURCES, steps=("prime",))

    @app.post("/mix", tags=["actions"], status_code=202)
    def post_mix(body: MixRequest) -> JobInfo:
        """Prime, then run the first portion of the mixture through the mixer to waste."""
        mix = plan_mix(bench, dict(body.composition))
        return jobs.submit("mix", _mix_job(bench, mix, False), steps=("prime", "mix"))

    @app.post("/deliver", tags=["actions"], status_code=202)
    def post_deliver(body: MixRequest) -> JobInfo:
        """Prime, mix, tare the balance and push the sample through the densimeter cell."""
        mix = plan_mix(bench, dict(body.composition))
        return jobs.submit("deliver", _mix_job(bench, mix, True),
                           steps=("prime", "mix", "tare", "deliver"))

    @app.post("/measure", tags=["actions"], status_code=202)
    def post_measure(body: MeasureRequest) -> JobInfo:
        """Measure the cell's content: density (g/cm³) and viscosity (mPa·s) per repetition."""
        return submit_measure(ctx, body.sample)

    @app.post("/drain", tags=["actions"], status_code=202)
    def post_drain(body: DrainRequest) -> JobInfo:
        """Blow gas through mixer, lines and cell into ``sink`` and weigh it if on the balance."""
        instrument = _instrument(bench)
        sink = body.sink or (bench.config.balance.vessel if bench.config.balance
                             else bench.config.settings.waste_nodes[0])
        bench.graph.route(bench.config.settings.mixer_outlet, sink)  # 422 if impossible

        def run(job: JobHandle) -> PushesResult:
            push = drain(bench, instrument, sink, Ledger())
            job.step("weigh")
            return PushesResult(pushes=[push], mass=_mass(bench, sink))
        return jobs.submit("drain", run, steps=("drain", "weigh"))

    @app.post("/clean", tags=["actions"], status_code=202)
    def post_clean() -> JobInfo:
        """Rinse mixer, lines and cell with solvent into waste, then drain with gas."""
        instrument = _instrument(bench)
        return jobs.submit("clean", lambda job: PushesResult(
            pushes=clean(bench, instrument, Ledger())), steps=("clean",))

    @app.post("/calibrate", tags=["actions"], status_code=202)
    def post_calibrate(body: CalibrateRequest) -> JobInfo:
        """Calibrate a pump on the balance: delivered / commanded volume, applied to later
        pushes on this bench (not written to the calibration file)."""
        lookup(bench.pumps, body.pump, "pump")
        if bench.balance is None:
            raise HTTPException(404, "this bench has no balance")
        return jobs.submit("calibrate", lambda job: calibrate_pump(
            bench, body.pump, body.volume, body.repeats), steps=("calibrate",))

    @app.post("/bench/reset", tags=["safety"])
    def post_bench_reset() -> ResetResponse:
        """After an operator has dealt with the cause (e.g. freed a blocked line): clear latched
        pump drive faults, make the bench safe again and lift its out-of-service mark
        (:meth:`asab.actions.bench.Bench.reset_faults`). 409 while a job runs, while the
        emergency stop is latched, or when the bench is still unsafe (it stays out of service)."""
        with jobs.claim(RESOURCES, motion=True):
            done = bench.reset_faults()
        return ResetResponse(done=done, out_of_service=bench.out_of_service)

    return app


class ResetResponse(BaseModel):
    done: str = Field(description="what the reset did, e.g. 'drive faults cleared: D0.0; pumps "
                      "stopped; valves parked: none needed'")
    out_of_service: str | None = Field(description="null: the bench is back in service")
