"""The actions server: formulate (a plan, answered at once) and the long actions as jobs —
prime, mix, deliver, measure, drain, clean, calibrate (a pump, on the balance) — the
operator's ``POST /bench/reset`` that puts an out-of-service bench back in service, and the
bench ledger: ``GET /bench/status`` and the operator's corrections ``POST /bench/refill``,
``/bench/empty``, ``/bench/set-line`` (:mod:`asab.ledger.operator`, as ``asab bench ...``;
refused with 409 while a job runs).

Every long action is a plan made from the bench ledger before it is accepted
(:mod:`asab.plan.planner`, as ``asab run`` plans its jobs) and run by the one executor
(:mod:`asab.actions.executor`); a plan refused for a consumable, or a composition outside the
makeable region, is answered with 422 naming the consumable or the closest makeable one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field, StringConstraints

from asab.actions.bench import Bench
from asab.actions.calibration import calibrate_pump
from asab.actions.executor import EventKind, Execution, execute_into, sync_syringes
from asab.actions.job import check_in_service, context
from asab.actions.sample import PushRecord
from asab.errors import RequestError
from asab.formulation import by_name, plan_formulation
from asab.formulation.plan import MAX_TOTAL_VOLUME
from asab.ledger import operator
from asab.ledger.liquid import total
from asab.ledger.model import BenchLedger, LedgerEvent
from asab.plan import JobPlan, Purpose
from asab.plan.planner import formulate as plan_composition
from asab.plan.planner import plan_clean, plan_drain, plan_mix, plan_prime
from asab.servers.common import ServerContext, Strict, lookup, make_app
from asab.servers.densimeter import MeasureRequest, submit_measure
from asab.servers.jobs import RESOURCES, JobHandle, JobInfo
from asab.servers.live import add_live_routes

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


TEXT = r"^[^\x00-\x1f\x7f]*$"
"""No control characters (notes and names are shown in tables and logs)."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=TEXT)]
NOTE = Field(default="", max_length=500, pattern=TEXT,
             description="the operator's note: why, or what was done (kept with the event)")


class RefillRequest(Strict):
    node: Name = Field(description="stock reservoir or solvent bottle (tubing node)")
    volume: float = Field(ge=0, le=100_000, allow_inf_nan=False,
                          description="mL the vessel now holds (at most its capacity)")
    note: str = NOTE


class EmptyRequest(Strict):
    node: Name = Field(description="waste container, vial or the vessel on the balance")
    note: str = NOTE


class SetLineRequest(Strict):
    segment: Name = Field(description="tubing segment (edge label)")
    liquid: Name = Field(description="what fills it now: a stock name, solvent, gas or unknown")
    note: str = NOTE


class VesselLevel(BaseModel):
    node: str
    kind: str = Field(description="stock, solvent, gas, waste or vial")
    stocks: list[str] = Field(description="stock solutions kept in it (reservoirs)")
    volume: float = Field(description="mL of liquid")
    capacity: float | None = Field(description="mL; null: unlimited (a gas supply)")
    content: dict[str, float] = Field(description="origin → mL")


class BalanceLoad(BaseModel):
    vessel: str = Field(description="the vessel on the pan")
    load: float = Field(description="g of liquid in it")
    capacity: float = Field(description="g the balance weighs at most")


class SyringeLevel(BaseModel):
    pump: str
    capacity: float = Field(description="mL")
    volume: float = Field(description="mL (liquid and gas)")
    content: dict[str, float] = Field(description="origin → mL")


class LineContent(BaseModel):
    segment: str
    volume: float = Field(description="mL")
    main: str = Field(description="the origin filling most of it")
    content: dict[str, float] = Field(description="origin → mL")


class BenchStatus(BaseModel):
    """What the bench ledger holds (``asab bench status --json`` shows the same)."""

    bench: str
    updated: str = Field(description="last change, ISO 8601 UTC")
    out_of_service: str | None
    waiting: str | None = Field(description="why no further job can be planned, or null")
    vessels: list[VesselLevel]
    balance: BalanceLoad | None
    syringes: list[SyringeLevel]
    lines: list[LineContent]
    events: list[LedgerEvent] = Field(description="the latest changes, oldest first")
    ledger: BenchLedger | None = Field(default=None, description="the whole ledger (?ledger=true)")


class LedgerCorrection(BaseModel):
    subject: str = Field(description="the vessel or segment corrected")
    before: dict[str, float] = Field(description="its content before, origin → mL")
    after: dict[str, float] = Field(description="its content now, origin → mL")
    event: LedgerEvent


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


def formulate(bench: Bench, body: FormulateRequest) -> FormulationResponse:
    """Plan ``body.composition`` (raises NotMakeableError / RequestError → 422)."""
    cfg = bench.config
    plan = plan_formulation(cfg, dict(body.composition), body.volume, policy=body.policy)
    return FormulationResponse(
        requested=by_name(plan.requested, cfg), achieved=by_name(plan.achieved, cfg),
        distance=plan.distance, makeable=plan.makeable, flagged=plan.flagged,
        deliverable=plan.deliverable, notes=list(plan.notes), stock_volumes=plan.stock_volumes,
        flows=plan.flows, pumps=plan.pumps, total_volume=plan.total_volume)


def _planned(bench: Bench, make, *, densimeter: bool = True) -> JobPlan:
    """``make(ctx, ledger)`` over the synchronised ledger (raises 409 out of service, 404 no
    densimeter, 422 for a consumable or an unmakeable composition)."""
    check_in_service(bench)
    if densimeter and bench.config.densimeter is None:
        raise HTTPException(404, "this bench has no densimeter")
    sync_syringes(bench)
    return make(context(bench), bench.ledger.current())


def _run_plan(bench: Bench, plan: JobPlan, job: JobHandle,
              formulation: FormulationResponse | None = None) -> PushesResult:
    """Execute ``plan`` (the job's steps follow its phases) and say what it pushed."""
    ex = Execution()

    def on_event(event) -> None:
        if event.kind is EventKind.PHASE:
            job.step(str(event.phase))
    execute_into(bench, plan, ex, on_event)
    primed = sorted({st.pump for st in plan.steps
                     if st.kind == "fill" and st.purpose is Purpose.PRIME})
    return PushesResult(pushes=[PushRecord.of(p) for p in plan.pushes], primed=primed,
                        mass=ex.readings[-1] if ex.readings else None, formulation=formulation)


def _submit(ctx: ServerContext, name: str, plan: JobPlan, formulation=None) -> JobInfo:
    """Run ``plan`` as a job claiming what its steps hold (:func:`plan_resources`): an action
    that shares none of them with a running one runs at the same time, one that does answers
    409."""
    steps = tuple(dict.fromkeys(str(m.phase) for m in plan.phases))
    return ctx.jobs.submit(name, lambda job: _run_plan(ctx.bench, plan, job, formulation),
                           steps=steps, resources=plan_resources(plan, ctx.bench.config))


def plan_resources(plan: JobPlan, config) -> list[str]:
    """Every resource some step of ``plan`` holds (:func:`asab.plan.schedule.resources`)."""
    from asab.plan.schedule import resources

    return sorted(set().union(*(resources(step, config) for step in plan.steps)))


def _mix(ctx: ServerContext, body: MixRequest, deliver: bool) -> JobInfo:
    bench = ctx.bench
    composition = dict(body.composition)
    plan = _planned(bench, lambda c, ledger: plan_mix(
        c, ledger, plan_composition(c, ledger, composition, 1.0), deliver=deliver))
    response = formulate(bench, FormulateRequest(composition=composition))
    return _submit(ctx, "deliver" if deliver else "mix", plan, response)


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


def _content(ledger: BenchLedger, subject: str, segment: bool) -> dict[str, float]:
    return total(ledger.line(subject)) if segment else dict(ledger.vessels[subject].content)


def _correct(ctx: ServerContext, subject: str, change, *, segment: bool = False
             ) -> LedgerCorrection:
    """Apply an operator's correction ``change(store)`` to the ledger while no job runs (409
    otherwise); an unknown name or a refused value is 422 with the message. On a simulated
    bench the world follows (the operator's hands, simulated)."""
    bench = ctx.bench
    store = bench.ledger
    with ctx.jobs.claim(RESOURCES, motion=False):
        try:
            if segment:
                operator.check_segment(bench.config, subject)
            else:
                operator.check_vessel(store.current(), subject)
            before = _content(store.current(), subject, segment)
            ledger = change(store)
        except (KeyError, ValueError) as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise RequestError(str(text)) from exc
        mirror = getattr(bench, "operator_hook", None)
        if mirror is not None:
            mirror(ledger, subject)
    return LedgerCorrection(subject=subject, before=before,
                            after=_content(ledger, subject, segment), event=ledger.log[-1])


def create_actions_app(ctx: ServerContext) -> FastAPI:
    """The actions server for ``ctx.bench``: POST acts (long ones return a job), GET reads."""
    app = make_app(ctx, "actions", "Named actions on one asab bench: formulate, prime, mix, "
                   "deliver, measure, drain, clean, calibrate (pumps); the live bench "
                   "page at / (open /?token=TOKEN once in a browser).", page=True)
    add_live_routes(app, ctx)
    bench, jobs = ctx.bench, ctx.jobs

    @app.post("/formulate", tags=["actions"])
    def post_formulate(body: FormulateRequest) -> FormulationResponse:
        """Plan stock volumes and flows (nothing moves). Not makeable: 422 with the closest."""
        return formulate(bench, body)

    @app.post("/prime", tags=["actions"], status_code=202)
    def post_prime(body: PrimeRequest) -> JobInfo:
        """Prime reservoir lines (lines the ledger knows to be primed are skipped)."""
        sources = _prime_sources(bench, body.pumps)
        plan = _planned(bench, lambda c, ledger: plan_prime(c, ledger, sources), densimeter=False)
        return _submit(ctx, "prime", plan)

    @app.post("/mix", tags=["actions"], status_code=202)
    def post_mix(body: MixRequest) -> JobInfo:
        """Prime, then run the first portion of the mixture through the mixer to waste."""
        return _mix(ctx, body, deliver=False)

    @app.post("/deliver", tags=["actions"], status_code=202)
    def post_deliver(body: MixRequest) -> JobInfo:
        """Prime, mix, tare the balance and push the sample through the densimeter cell."""
        return _mix(ctx, body, deliver=True)

    @app.post("/measure", tags=["actions"], status_code=202)
    def post_measure(body: MeasureRequest) -> JobInfo:
        """Measure the cell's content: density (g/cm³) and viscosity (mPa·s) per repetition."""
        return submit_measure(ctx, body.sample)

    @app.post("/drain", tags=["actions"], status_code=202)
    def post_drain(body: DrainRequest) -> JobInfo:
        """Blow gas through mixer, lines and cell into ``sink`` and weigh it if on the balance."""
        plan = _planned(bench, lambda c, ledger: plan_drain(c, ledger, body.sink))
        return _submit(ctx, "drain", plan)

    @app.post("/clean", tags=["actions"], status_code=202)
    def post_clean() -> JobInfo:
        """Rinse mixer, lines and cell with solvent into waste, then drain with gas."""
        return _submit(ctx, "clean", _planned(bench, plan_clean))

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

    @app.get("/bench/status", tags=["ledger"])
    def get_bench_status(
            events: Annotated[int, Query(ge=0, le=2000, description="latest events")] = 10,
            ledger: Annotated[bool, Query(description="include the whole ledger")] = False,
    ) -> BenchStatus:
        """The bench ledger: every vessel's level and capacity, the balance load, syringe and
        line contents, out-of-service and waiting reasons, the latest events."""
        current = bench.ledger.current()
        data = operator.status(bench.config, current, events=events)
        return BenchStatus.model_validate({**data, "ledger": current if ledger else None})

    @app.post("/bench/refill", tags=["ledger"])
    def post_bench_refill(body: RefillRequest) -> LedgerCorrection:
        """A stock reservoir or the solvent bottle now holds ``volume`` mL (the operator
        refilled it). 422: unknown node, not a reservoir or the solvent, above its capacity."""
        return _correct(ctx, body.node, lambda store: operator.refill(
            store, body.node, body.volume, body.note))

    @app.post("/bench/empty", tags=["ledger"])
    def post_bench_empty(body: EmptyRequest) -> LedgerCorrection:
        """A waste container, vial or the vessel on the balance has been emptied. (A vial of
        the tenant's occupancy is released with ``asab vials --release``.)"""
        return _correct(ctx, body.node, lambda store: operator.empty(store, body.node,
                                                                     body.note))

    @app.post("/bench/set-line", tags=["ledger"])
    def post_bench_set_line(body: SetLineRequest) -> LedgerCorrection:
        """Tubing segment ``segment`` holds ``liquid`` over its whole volume (after manual
        work). 422: unknown segment or liquid."""
        return _correct(ctx, body.segment, lambda store: operator.set_line(
            store, body.segment, body.liquid, body.note), segment=True)

    return app


class ResetResponse(BaseModel):
    done: str = Field(description="what the reset did, e.g. 'drive faults cleared: D0.0; pumps "
                      "stopped; valves parked: none needed'")
    out_of_service: str | None = Field(description="null: the bench is back in service")
