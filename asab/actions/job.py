"""One density/viscosity job end to end: formulate → prime → mix → deliver → measure →
retrieve → drain (weighing what passed the cell) → clean, into a :class:`JobRecord`."""

from __future__ import annotations

import datetime as dt
import logging
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

import asab
from asab.actions.bench import Bench
from asab.actions.executor import EventKind, Execution, execute_into, sync_syringes
from asab.actions.gravimetric import GravimetricRecord
from asab.actions.pipeline import Pipeline
from asab.actions.safety import SafetyError, settle
from asab.actions.sample import PushRecord, Summary, summarize
from asab.drivers.base import RepetitionResult
from asab.errors import (
    AsabError,
    Cause,
    DeviceError,
    DeviceFault,
    FormulationError,
    NotMakeableError,
    RequestError,
    describe,
)
from asab.formulation import by_name, composition_distance
from asab.plan import ConsumableError, JobPlan, Phase, Purpose
from asab.plan.carryover import DENSITY_MODEL_UNCERTAINTY, REPEATABILITY, Sizing
from asab.plan.planner import BenchContext, plan_density, plan_recovery, stock_aware
from asab.plan.schedule import lanes
from asab.requests import TEMPERATURE_TOLERANCE, DensityJob

log = logging.getLogger(__name__)


UNITS = {
    "composition": "mol/mol", "density": "g/cm3", "viscosity": "mPa*s (dynamic)",
    "temperature": "K", "volume": "mL", "flow": "mL/s", "mass": "g", "bench time": "s",
}
"""Units of every number in a :class:`JobRecord`, written into each record."""


class Weighing(BaseModel):
    """Gravimetric check of the sample that passed the cell."""

    model_config = ConfigDict(extra="forbid")
    vessel: str
    mass: float = Field(description="g collected on the balance")
    volume_expected: float = Field(
        description="mL that passed the cell: pushed for the sample + the shared mixer line")
    volume_weighed: float | None = Field(description="mL = mass / measured density")
    relative_deviation: float | None = Field(description="(weighed − expected) / expected")
    mass_expected: float | None = Field(default=None, description=(
        "g expected from the plan: volume_expected × Σ(stock share × stock density)"))
    mass_deviation: float | None = Field(
        default=None, description="(mass − mass_expected) / mass_expected")


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample: str
    method: str
    temperature: float | None = Field(description="K, mean cell temperature")
    density: Summary = Field(description="g/cm³ per repetition")
    viscosity: Summary = Field(description="dynamic viscosity, mPa·s per repetition")
    repetitions: list[RepetitionResult] = Field(
        description="every repetition as exported: values, conditions, temperatures (K)")
    raw_file: str
    raw_text: str


class StepTime(BaseModel):
    """When a step of the job began, in bench seconds from the job's start."""

    model_config = ConfigDict(extra="forbid")
    step: str
    start: float = Field(description="s since the job started (bench clock)")


class StepSpan(BaseModel):
    """When one step of the plan ran, in bench seconds (the bench clock, not from the job's
    start: overlapping jobs share one time line)."""

    model_config = ConfigDict(extra="forbid")
    step: int = Field(description="index into the plan's steps")
    kind: str
    phase: str
    start: float = Field(description="s, bench clock")
    end: float = Field(description="s, bench clock")
    lanes: list[str] = Field(default_factory=list, description=(
        "the pumps, valves, instrument cell and balance it held (asab.plan.schedule)"))


class RunRecord(BaseModel):
    """What every job record holds (density jobs, vial deliveries): ids, status, times, units,
    requested vs achieved composition, stock, steps, pushes, routes and recovery."""

    model_config = ConfigDict(extra="forbid")
    job_id: str
    request_id: str
    status: Literal["succeeded", "failed", "rejected"] = "failed"
    reason: str | None = None
    error: dict[str, Any] | None = None
    units: dict[str, str] = Field(default_factory=lambda: dict(UNITS))
    software_version: str = asab.__version__
    bench: str
    started: str = Field(description="wall-clock start, ISO 8601 UTC")
    finished: str | None = None
    bench_start: float = Field(default=0.0, description="bench clock at the start, s")
    bench_seconds: float = Field(default=0.0, description="bench (clock) seconds used")
    requested: dict[str, float] = Field(default_factory=dict, description="name → mole fraction")
    achieved: dict[str, float] | None = Field(default=None, description="name → mole fraction")
    distance: float | None = Field(default=None, description="Euclidean, mole fractions")
    flagged: bool = False
    closest: dict[str, float] | None = Field(
        default=None, description="name → mole fraction of the closest makeable composition, "
        "when the request was rejected as not makeable")
    stock_volumes: dict[str, float] = Field(default_factory=dict, description="stock → mL planned")
    stock_drawn: dict[str, float] = Field(default_factory=dict, description="stock → mL drawn")
    steps: list[StepTime] = Field(default_factory=list, description="phase start times")
    step_times: list[StepSpan] = Field(default_factory=list, description=(
        "every step that ran: start and end on the bench clock"))
    pushes: list[PushRecord] = Field(default_factory=list)
    routes: list[dict[str, Any]] = Field(default_factory=list)
    recovery: str | None = Field(default=None, description="what was done after a failure")
    liquid_moved: bool = Field(default=False, description="liquid or gas was moved")
    preempted: bool = Field(default=False, description=(
        "a pipelined run stopped this job because another job failed (not this job's fault)"))
    consumables: list[dict[str, Any]] | None = Field(default=None, description=(
        "when refused for a consumable: each one short (consumable, node, needed, left, "
        "unit, fix)"))
    plan_duration: float | None = Field(default=None, description="s, the plan's estimate")
    plan_notes: list[str] = Field(default_factory=list)
    request: Any = None
    _requeue: bool = PrivateAttr(default=False)

    @property
    def requeued(self) -> bool:
        """Preempted in a pipelined run before its sample was mixed: to be run again."""
        return self._requeue


class QualityFlag(StrEnum):
    """Why a successful result is trusted less."""

    DENSITY_DISAGREES = "measured density disagrees with the predicted composition"
    CARRYOVER = "predicted carry-over above the tolerance"


class DensityCheck(BaseModel):
    """The measured density against the expected density of the predicted cell content.

    ``agrees``: |measured − expected| ≤ 2 × combined standard uncertainty (model, the
    instrument's repeatability, the standard error of the mean)."""

    model_config = ConfigDict(extra="forbid")
    expected: float = Field(description="g/cm³")
    measured: float = Field(description="g/cm³ (mean of the valid repetitions)")
    difference: float = Field(description="measured − expected, g/cm³")
    uncertainty: float = Field(description="combined standard uncertainty, g/cm³")
    agrees: bool


class BlankCheck(BaseModel):
    """A blank reading of the cell full of cleaning solvent after the rinse."""

    model_config = ConfigDict(extra="forbid")
    chemical: str
    reference: float = Field(description="g/cm³ at the method temperature (chemicals.csv)")
    measured: float | None = Field(description="g/cm³, None without a valid value")
    tolerance: float = Field(description="g/cm³")
    clean: bool


class JobRecord(RunRecord):
    """Everything a chemist needs to trust (or distrust) one density/viscosity result."""

    sample: str = Field(default="", description="sample name given to the instrument")
    composition_source: Literal["plan", "weighing"] = Field(default="plan", description=(
        "`achieved` computed from the planned stock volumes, or from weighed doses "
        "(asab.actions.gravimetric; then `achieved_uncertainty` and `gravimetric` are set)"))
    achieved_uncertainty: dict[str, float] | None = Field(
        default=None, description="name → standard uncertainty of the achieved mole fraction")
    temperature_requested: float | None = Field(default=None, description="K")
    measurement: Measurement | None = None
    weighing: Weighing | None = None
    gravimetric: GravimetricRecord | None = Field(
        default=None, description="doses weighed to verify the formulation (masses g, volumes mL)")
    composition_predicted: dict[str, float] | None = Field(default=None, description=(
        "name → mole fraction predicted in the cell when it measured, carry-over included "
        "(asab.plan.carryover, from the ledger's line contents, films and pockets)"))
    composition_predicted_uncertainty: dict[str, float] | None = Field(
        default=None, description="name → standard uncertainty of that mole fraction")
    carryover_predicted: float | None = Field(default=None, description=(
        "largest |predicted − planned| mole fraction in the cell"))
    density_expected: float | None = Field(default=None, description=(
        "g/cm³ of the predicted cell content (ideal mixing of the stock solutions)"))
    density_check: DensityCheck | None = None
    blank: BlankCheck | None = None
    sizing: list[Sizing] = Field(default_factory=list, description=(
        "which rule sized the first portion, the sample flush and the cleaning"))
    quality_flags: list[QualityFlag] = Field(default_factory=list, description=(
        "reasons the result is trusted less (each lowers its broker rating by one)"))


def _now() -> str:
    """Wall-clock now, ISO 8601 UTC."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def new_record(bench: Bench, job_id: str, request_id: str, request: Any) -> JobRecord:
    return JobRecord(job_id=job_id, request_id=request_id, status="failed",
                     bench=bench.config.name, started=_now(), request=request)


def context(bench: Bench) -> BenchContext:
    """What the planner needs of ``bench`` (configuration, graph, delivery factors)."""
    return BenchContext(bench.config, bench.graph, bench.delivery_factors)


class JobRun:
    """The skeleton every job shares (density, vial): phases timed into the record, the
    plan executed, rejections and failures turned into the record, recovery after a failure.

    Args:
        bench: the opened bench.
        rec: the record to fill.
        kind: ``"density"`` or ``"vial"`` (which recovery a failure needs).
        progress: optional ``progress(step: str)`` for displays.
    """

    def __init__(self, bench: Bench, rec: RunRecord, kind: str, progress=None,
                 pipeline: tuple[Pipeline, int] | None = None) -> None:
        self.bench, self.rec, self.kind, self.progress = bench, rec, kind, progress
        self.execution = Execution()
        self.plan: JobPlan | None = None
        self.vial: str | None = None
        self.listeners: list = []
        self.pipeline = pipeline
        self.requeue = False
        rec.bench_start = bench.clock.now()

    def step(self, phase: Phase | str) -> None:
        """Record that ``phase`` begins now."""
        name = str(phase)
        self.rec.steps.append(StepTime(step=name, start=self.bench.clock.now() - self.rec.bench_start))
        if self.progress:
            self.progress(name)

    def on_event(self, event) -> None:
        if event.kind is EventKind.PHASE:
            self.step(event.phase)
        for listener in self.listeners:
            listener(event)

    def plan_with(self, planner) -> JobPlan:
        """``planner(ctx, ledger) → JobPlan`` over the ledger (syringes synchronised first);
        the record takes what the plan makes."""
        if self.pipeline is None:
            sync_syringes(self.bench)
            ledger = self.bench.ledger.current()
        else:
            pipe, job = self.pipeline
            pipe.names[job] = self.rec.job_id
            pipe.check_planning()  # another job failed: back to the queue, nothing planned
            if not pipe.busy():
                sync_syringes(self.bench)
            ledger = pipe.predicted_ledger()
        self.plan = planner(context(self.bench), ledger)
        if self.pipeline is not None:
            self.pipeline[0].add(self.pipeline[1], self.plan)
        f = self.plan.formulation
        cfg = self.bench.config
        self.rec.achieved = by_name(f.achieved, cfg)
        self.rec.distance, self.rec.flagged = f.distance, f.flagged
        self.rec.plan_duration, self.rec.plan_notes = self.plan.duration, list(self.plan.notes)
        return self.plan

    def execute(self) -> None:
        try:
            if self.pipeline is None:
                execute_into(self.bench, self.plan, self.execution, self.on_event)
            else:
                pipe, job = self.pipeline
                pipe.execute(job, self.plan, self.execution, self.on_event)
        finally:
            self._account()

    def preempted(self) -> bool:
        """In a pipelined run, another job's step failed first (this job only stopped)."""
        if self.pipeline is None:
            return False
        pipe, job = self.pipeline
        return pipe.failure is not None and pipe.failure[0] != job

    def mixed(self) -> bool:
        """A push of the sample's liquid (first portion, sample, vial) has started."""
        mixing = (Purpose.FIRST_PORTION, Purpose.SAMPLE, Purpose.VIAL)
        return self.plan is not None and any(
            getattr(self.plan.steps[i], "purpose", None) in mixing for i in self.execution.times)

    def _account(self) -> None:
        """Pushes, routes and stock from what was executed (also after a failure)."""
        plan, ex, rec, cfg = self.plan, self.execution, self.rec, self.bench.config
        rec.liquid_moved = ex.liquid_moved
        rec.step_times = [StepSpan(step=i, kind=plan.steps[i].kind, phase=str(plan.steps[i].phase),
                                   start=a, end=b, lanes=lanes(plan.steps[i], cfg))
                          for i, (a, b) in sorted(ex.times.items())]
        rec.pushes = [PushRecord.of(p) for p in plan.pushes if ex.finished(p.steps)]
        for i in ex.done:
            step = plan.steps[i]
            if step.kind == "fill":
                rec.routes.append({"purpose": f"fill {step.pump} from {step.source}",
                                   **step.route.model_dump()})
            elif step.kind == "dispense":
                rec.routes.extend({"purpose": f"{step.purpose}: {m.pump}", **m.route.model_dump()}
                                  for m in step.moves)
        mixed = sum(p.volume for p in rec.pushes
                    if p.purpose in (Purpose.FIRST_PORTION, Purpose.SAMPLE, Purpose.VIAL))
        f = plan.formulation
        rec.stock_volumes = {s: v / f.total_volume * mixed for s, v in f.stock_volumes.items()
                             if v > 0}
        by_source = {st.reservoir: st.name for st in cfg.stocks}
        rec.stock_drawn = {by_source[n]: v for n, v in ex.drawn.items() if n in by_source}

    def run(self, work) -> RunRecord:
        """Run ``work()`` (plans and executes); never raises for job-level problems."""
        bench, rec = self.bench, self.rec
        refused = bench.out_of_service is not None
        try:
            work()
            rec.status = "succeeded"
        except (FormulationError, RequestError) as exc:
            rec.status, rec.reason, rec.error = "rejected", str(exc), describe(exc)
            if isinstance(exc, NotMakeableError):
                rec.closest, rec.distance = exc.closest, exc.distance
            if isinstance(exc, ConsumableError):
                rec.consumables = [s.as_dict() for s in exc.shortages]
        except Exception as exc:
            if self.preempted():
                self._preempted(exc)
                rec.bench_seconds = bench.clock.now() - rec.bench_start
                rec.finished = _now()
                return rec
            log.exception("job %s failed", rec.job_id)
            bench.stop_all()
            rec.status, rec.reason, rec.error = "failed", str(exc) or type(exc).__name__, describe(exc)
            self.failed()
            if self.pipeline is not None:  # stop every other task before the recovery moves
                pipe, job = self.pipeline
                pipe.fail(job, None, exc)
                pipe.quiesce()
            if not refused:  # a bench already out of service was not touched
                self.step(Phase.RECOVER)
                rec.recovery = recover(bench, self.kind, drain_lines=self.execution.liquid_moved,
                                       vial=self.vial)
        rec.bench_seconds = bench.clock.now() - rec.bench_start
        rec.finished = _now()
        return rec

    def failed(self) -> None:
        """Hook: what a job kind does right after a failure (before recovery)."""

    def _preempted(self, exc: Exception) -> None:
        """Another job failed first: back to the queue when nothing was mixed yet (its
        recovery puts the bench right), else failed with the reason; no recovery of its own."""
        pipe, _ = self.pipeline
        job, _, cause = pipe.failure
        self.rec.status, self.rec.error = "failed", describe(exc)
        self.rec.preempted = True
        self.requeue = not self.mixed()
        when = "before its sample was mixed" if self.requeue else "after its sample was mixed"
        self.rec.reason = f"stopped {when}: {pipe.name(job)} failed ({cause})"
        log.warning("job %s %s", self.rec.job_id,
                    "goes back to the queue" if self.requeue else "failed: " + self.rec.reason)


def run_density_job(bench: Bench, job: DensityJob, job_id: str, progress=None,
                    sample: str | None = None,
                    pipeline: tuple[Pipeline, int] | None = None, *,
                    clean_after: bool = True) -> JobRecord:
    """Run one job; never raises for job-level problems — they end up in the record.

    The job is planned from the bench ledger before anything moves
    (:func:`asab.plan.planner.plan_density`: refused with the consumable named when stock,
    solvent, waste or balance capacity would not suffice), then executed
    (:mod:`asab.actions.executor`). After a failure the bench is recovered (:func:`recover`):
    once liquid has moved, the cell and lines are drained and cleaned; in every case the pumps
    are confirmed stopped and the reservoirs closed off by parking valves. If any of that
    fails, the bench is marked out of service and later jobs fail at once.

    Args:
        bench: the opened bench.
        job: the validated request.
        job_id: id of this job within the run.
        progress: optional callable ``progress(step: str)`` for displays.
        sample: sample name for the instrument (letters, digits, ``_``, ``-``); default
            ``job_id``.
        pipeline: (pipeline, this job's index in it) for a pipelined run: the job is planned
            from the ledger the queued jobs will leave and its steps run as the pipeline's
            tasks (:mod:`asab.actions.pipeline`); the record's ``requeued`` is true when it was
            preempted before mixing (it goes back to the queue; the record is not final).

    Returns:
        The record, status ``succeeded``, ``rejected`` (not makeable, not deliverable, not
        enough of a consumable, wrong temperature) or ``failed`` (a device, routing or
        measurement problem; pumps were stopped).
    """
    rec = new_record(bench, job_id, job.request_id, job.raw)
    rec.sample = sample or job_id
    rec.requested = by_name(job.formulation, bench.config)
    rec.temperature_requested = job.temperature
    run = JobRun(bench, rec, "density", progress, pipeline)
    out = run.run(lambda: _density(run, job, clean_after))
    out._requeue = run.requeue
    return out


def _density(run: JobRun, job: DensityJob, clean_after: bool = True) -> None:
    bench, rec = run.bench, run.rec
    cfg = bench.config
    dens = cfg.densimeter
    check_in_service(bench)
    if dens is None:
        raise AsabError("this bench has no densimeter configured")
    if job.temperature is not None and abs(job.temperature - dens.temperature) > TEMPERATURE_TOLERANCE:
        raise RequestError(f"temperature {job.temperature:.2f} K is not available: this bench "
                           f"measures at {dens.temperature:.2f} K (method {dens.method})")
    run.step(Phase.FORMULATE)
    plan = run.plan_with(lambda ctx, ledger: stock_aware(lambda f: plan_density(
        ctx, ledger, f, request_id=job.request_id, sample=rec.sample,
        clean_after=clean_after), ctx, ledger, job.formulation, 1.0))
    _predicted(rec, plan, cfg)
    try:
        run.execute()
    finally:
        ex = run.execution
        if ex.measurement is not None:
            rec.measurement = _measurement(ex.measurement)
        if ex.blank is not None or any(getattr(st, "blank", False) for st in plan.steps):
            rec.blank = _blank(bench, ex.blank)
        if ex.readings:
            rec.weighing = _weigh(bench, plan, ex.readings[-1], rec)
    _judge(bench, rec, plan)
    _check_density(rec)
    if rec.blank is not None and not rec.blank.clean:
        bench.out_of_service = (
            f"blank after cleaning read {rec.blank.measured} g/cm³ for {rec.blank.chemical}, "
            f"reference {rec.blank.reference:.5f} ± {rec.blank.tolerance:g}: the cell is "
            "dirty; clean it and put the bench back in service")


def _predicted(rec: JobRecord, plan: JobPlan, cfg) -> None:
    """Copy the plan's carry-over prediction and sizing into the record."""
    rec.sizing = list(plan.sizing)
    pred = plan.cell_prediction
    if pred is None:
        return
    rec.composition_predicted = by_name(pred.composition, cfg)
    rec.composition_predicted_uncertainty = by_name(pred.uncertainty, cfg)
    rec.carryover_predicted = pred.contamination
    rec.density_expected = pred.density_expected
    if pred.contamination > cfg.carryover.tolerance:
        rec.quality_flags.append(QualityFlag.CARRYOVER)


def _check_density(rec: JobRecord) -> None:
    """Compare the measured density with the expected density of the predicted content."""
    m = rec.measurement
    if m is None or rec.density_expected is None:
        return
    if m.density.mean is None or not m.density.n_valid:
        return
    sem = (m.density.stdev or 0.0) / max(m.density.n_valid, 1) ** 0.5
    u = (DENSITY_MODEL_UNCERTAINTY ** 2 + REPEATABILITY ** 2 + sem ** 2) ** 0.5
    diff = m.density.mean - rec.density_expected
    rec.density_check = DensityCheck(expected=rec.density_expected, measured=m.density.mean,
                                     difference=diff, uncertainty=u, agrees=abs(diff) <= 2 * u)
    if not rec.density_check.agrees:
        rec.quality_flags.append(QualityFlag.DENSITY_DISAGREES)


def _blank(bench: Bench, result) -> BlankCheck:
    """The blank reading (solvent in the cell after the rinse) against its reference."""
    cfg = bench.config
    chem = cfg.chemical(cfg.settings.solvent_chemical)
    reference = chem.density or 0.0
    measured = None
    if result is not None:
        vals = [r.density for r in result.repetitions if r.density_valid and r.density is not None]
        measured = sum(vals) / len(vals) if vals else None
    tol = cfg.carryover.blank_tolerance
    return BlankCheck(chemical=chem.name, reference=reference, measured=measured, tolerance=tol,
                      clean=measured is not None and abs(measured - reference) <= tol)


def check_in_service(bench: Bench) -> None:
    """Raises DeviceError (cause out of service) when the bench is out of service."""
    if bench.out_of_service:
        raise DeviceError("bench", Cause.OUT_OF_SERVICE,
                          f"bench out of service: {bench.out_of_service}")


def recover(bench: Bench, kind: str = "density", drain_lines: bool = True,
            vial: str | None = None) -> str:
    """After a failure: run the recovery plan (:func:`asab.plan.planner.plan_recovery`).

    Once liquid has moved: drain and clean the densimeter route (density) or rinse and dry
    the line shared with ``vial``'s route (vial), best effort; then the lines count as
    unknown (every pump primed again, every mixing line dry). In every case: stop every pump
    and read back that none moves and none has a drive fault latched, park every valve that
    joins a reservoir or the solvent past its port, and check that no reservoir is joined to
    a waste (:mod:`asab.actions.safety`).

    Returns:
        What was done. If any step failed the bench is marked out of service (later jobs are
        refused) and that reason is returned.
    """
    problems: list[str] = []
    what = "rinse/dry" if kind == "vial" else "drain/clean"
    try:
        sync_syringes(bench)
        plan, problems = plan_recovery(context(bench), bench.ledger.current(), kind=kind,
                                       drain_lines=drain_lines, vial=vial)
    except Exception as exc:  # noqa: BLE001 - every failure is a reason to stop the bench
        problems.append(f"{what}: {exc}")
        plan = None
    done = "; ".join(plan.notes) if plan is not None and plan.notes else (
        "nothing to drain" if kind == "density" else "nothing to rinse")
    if plan is not None:
        ex = Execution()
        execute_into(bench, plan, ex, best_effort=True)
        for index, exc in ex.problems:
            if plan.steps[index].kind != "make_safe":
                problems.append(f"{what}: {exc}")
            elif isinstance(exc, SafetyError):
                problems.extend(exc.problems)
            else:
                problems.append(f"making the bench safe: {exc!r}")
        if ex.safe is not None:
            done += "; " + ex.safe
    elif drain_lines:
        bench.forget_lines()
    return settle(bench, done, problems)


def _judge(bench: Bench, rec: JobRecord, plan: JobPlan) -> None:
    """A job succeeds only with a weighed mass not short of the plan, at least one valid
    density, and a weighed volume (mass / measured density) that agrees with the pushed one,
    each within ``settings.weighing_tolerance``.

    The mass is judged first: a short mass means the syringes pushed gas or liquid went
    elsewhere (an empty reservoir, a leak), and the densimeter's verdict on such a sample says
    nothing about the densimeter. A mass above the plan is only logged (the record keeps
    ``mass_deviation``): it is not what gas or a leak does.

    Raises:
        DeviceFault: cause "mass short" (balance): less mass than planned.
        DeviceError: cause "no valid value" (densimeter): no valid density; cause "weighing
            mismatch" (balance): the weighed volume is off.
    """
    w, tol = rec.weighing, bench.config.settings.weighing_tolerance
    balance = bench.config.balance.name if bench.config.balance else "balance"
    if w is not None and w.mass_deviation is not None and abs(w.mass_deviation) > tol:
        _mass_off(bench, rec, w, balance, tol, plan)
    m = rec.measurement
    if m is not None and m.density.n_valid == 0:
        conditions = sorted({r.density_condition for r in m.repetitions})
        raise DeviceError(bench.config.densimeter.name, Cause.NO_VALID_VALUE,
                          f"no valid density in {len(m.repetitions)} repetitions "
                          f"(conditions: {', '.join(conditions)})")
    if w is not None and w.relative_deviation is not None and abs(w.relative_deviation) > tol:
        raise DeviceError(balance, Cause.WEIGHING_MISMATCH,
                          f"weighed {w.volume_weighed:.3f} mL passed the cell, expected "
                          f"{w.volume_expected:.3f} mL ({w.relative_deviation:+.1%}, "
                          f"tolerance ±{tol:.0%})")


def _mass_off(bench: Bench, rec: JobRecord, w: Weighing, balance: str, tol: float,
              plan: JobPlan) -> None:
    """A weighed mass outside the tolerance: raise if short, log if above (see :func:`_judge`)."""
    by_pump = {st.pump: st.name for st in bench.config.stocks}
    pumps = ", ".join(f"{p} ({by_pump.get(p, '?')})" for p in sorted(plan.push(Purpose.SAMPLE).flows))
    text = (f"weighed {w.mass:.4f} g on {balance}, expected {w.mass_expected:.4f} g from the "
            f"plan ({w.mass_deviation:+.1%}, tolerance ±{tol:.0%}); pumps/stocks: {pumps}")
    if w.mass_deviation < 0:
        raise DeviceFault(balance, Cause.MASS_SHORT, f"{text}: a reservoir may be empty or a "
                          "line leaking")
    log.warning("%s: more mass than planned; are the stocks where the configuration says?",
                text)


def _measurement(result) -> Measurement:
    reps = result.repetitions
    temps = [r.density_temperature for r in reps if r.density_temperature is not None]
    return Measurement(
        sample=result.sample, method=result.method,
        temperature=sum(temps) / len(temps) if temps else None,
        density=summarize([r.density for r in reps], [r.density_valid for r in reps]),
        viscosity=summarize([r.viscosity for r in reps], [r.viscosity_valid for r in reps]),
        repetitions=list(reps), raw_file=result.raw_file, raw_text=result.raw_text,
    )


def _weigh(bench: Bench, plan: JobPlan, mass: float, rec: JobRecord) -> Weighing | None:
    """Compare the balance reading ``mass`` (stable value, g, under the plan's sink) with the
    plan.

    Expected volume: what the ledger predicts reaches the vessel (the plan's consumption;
    the lines' films and pockets keep some of the push back), else the sample push plus the
    shared mixer line (mL). Expected mass: that
    volume × the planned mixture's density Σ(flow share × stock density), from the stock data
    (:func:`planned_density`), not from the densimeter — so a sample that is partly gas (an
    empty reservoir) is still caught. The pushed volumes are stock volumes, whose masses add
    exactly; only the shared line holds mixed liquid, for which ideal mixing is assumed. The
    excess volume of carbonate/LiPF6 mixtures is far below the 5 % default
    ``weighing_tolerance``, so ideal mixing is fine here.
    """
    if bench.config.balance is None:
        return None
    sample, first = plan.push(Purpose.SAMPLE), plan.push(Purpose.FIRST_PORTION)
    expected = sample.volume + first.shared_line
    arrived = plan.consumption.change.get(plan.sink or "")
    if arrived is not None and arrived > 0:
        expected = arrived  # the ledger's prediction: films and pockets keep some back
    rho = rec.measurement.density.mean if rec.measurement else None
    weighed = mass / rho if rho else None
    dev = (weighed - expected) / expected if weighed is not None else None
    rho_plan = planned_density(bench, sample.flows)
    mass_expected = expected * rho_plan if rho_plan else None
    mass_dev = (mass - mass_expected) / mass_expected if mass_expected else None
    return Weighing(vessel=plan.sink, mass=mass, volume_expected=expected, volume_weighed=weighed,
                    relative_deviation=dev, mass_expected=mass_expected, mass_deviation=mass_dev)


def planned_density(bench: Bench, flows: dict[str, float]) -> float | None:
    """Density (g/cm³) of the mixture the pumps make at ``flows`` (pump → mL/s), from each
    pump's stock density, assuming ideal mixing; ``None`` if a pump carries no stock."""
    densities = {st.pump: st.density for st in bench.config.stocks}
    total = sum(flows.values())
    if total <= 0 or any(p not in densities for p in flows):
        return None
    return sum(f * densities[p] for p, f in flows.items()) / total


def record_weighing(rec: JobRecord, gravimetric: GravimetricRecord, bench: Bench) -> None:
    """Make ``rec`` carry the composition of a gravimetric verification: ``achieved`` and its
    uncertainty from the weighed masses, ``composition_source = "weighing"``, the distance
    from the request recomputed."""
    cfg = bench.config
    rec.gravimetric = gravimetric
    rec.achieved = by_name(gravimetric.achieved, cfg)
    rec.achieved_uncertainty = by_name(gravimetric.uncertainty, cfg)
    rec.composition_source = "weighing"
    if rec.requested:
        rec.distance = composition_distance(rec.requested, rec.achieved)


JobRecord.model_rebuild()
