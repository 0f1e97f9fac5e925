"""One density/viscosity job end to end: formulate → prime → mix → deliver → measure →
retrieve → drain (weighing what passed the cell) → clean, into a :class:`JobRecord`."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

import asab
from asab.actions.bench import Bench
from asab.actions.fluidics import Ledger, reserve
from asab.actions.gravimetric import GravimetricRecord
from asab.actions.safety import conclude_recovery
from asab.actions.sample import (
    PushRecord,
    Summary,
    clean,
    deliver,
    drain,
    first_portion,
    first_portion_volume,
    measure,
    prime,
    prime_volume,
    sample_volume,
    summarize,
)
from asab.drivers.base import RepetitionResult
from asab.errors import (
    AsabError,
    BelowResolutionError,
    DeviceError,
    DeviceFault,
    FormulationError,
    InsufficientStockError,
    NotMakeableError,
    RequestError,
    describe,
)
from asab.formulation import by_name, composition_distance, plan_formulation
from asab.requests import DensityJob

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
    steps: list[StepTime] = Field(default_factory=list, description="step start times")
    pushes: list[PushRecord] = Field(default_factory=list)
    routes: list[dict[str, Any]] = Field(default_factory=list)
    recovery: str | None = Field(default=None, description="what was done after a failure")
    request: Any = None


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


def _now() -> str:
    """Wall-clock now, ISO 8601 UTC."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def new_record(bench: Bench, job_id: str, request_id: str, request: Any) -> JobRecord:
    return JobRecord(job_id=job_id, request_id=request_id, status="failed",
                     bench=bench.config.name, started=_now(), request=request)


def stepper(bench: Bench, rec: RunRecord, progress=None):
    """Start ``rec``'s bench clock and return ``step(name)``: records when each step of the
    job began (bench seconds from the start) and tells ``progress(name)`` if given."""
    t0 = rec.bench_start = bench.clock.now()

    def step(name: str) -> None:
        rec.steps.append(StepTime(step=name, start=bench.clock.now() - t0))
        if progress:
            progress(name)

    return step


def run_density_job(bench: Bench, job: DensityJob, job_id: str, progress=None,
                    sample: str | None = None) -> JobRecord:
    """Run one job; never raises for job-level problems — they end up in the record.

    After a failure the bench is recovered (:func:`recover`): once liquid has moved, the cell
    and lines are drained and cleaned; in every case the pumps are confirmed stopped and the
    reservoirs closed off by parking valves. If any of that fails, the bench is marked out of
    service (``bench.out_of_service``) and later jobs fail at once instead of moving liquid.

    Args:
        bench: the opened bench.
        job: the validated request.
        job_id: id of this job within the run.
        progress: optional callable ``progress(step: str)`` for displays.
        sample: sample name for the instrument (letters, digits, ``_``, ``-``); default
            ``job_id``.

    Returns:
        The record, status ``succeeded``, ``rejected`` (not makeable, not deliverable, not
        enough stock, wrong temperature) or ``failed`` (a device, routing or measurement
        problem; pumps were stopped).
    """
    rec = new_record(bench, job_id, job.request_id, job.raw)
    rec.sample = sample or job_id
    refused = bench.out_of_service is not None
    step = stepper(bench, rec, progress)
    rec.requested = by_name(job.formulation, bench.config)
    rec.temperature_requested = job.temperature
    try:
        _run(bench, job, rec, step)
        rec.status = "succeeded"
    except (FormulationError, RequestError) as exc:
        rec.status, rec.reason, rec.error = "rejected", str(exc), describe(exc)
        if isinstance(exc, NotMakeableError):
            rec.closest, rec.distance = exc.closest, exc.distance
    except Exception as exc:  # noqa: BLE001 - any failure must end in a record
        log.exception("job %s failed", job_id)
        bench.stop_all()
        rec.status, rec.reason, rec.error = "failed", str(exc) or type(exc).__name__, describe(exc)
        if not refused:  # a bench already out of service was not touched
            moved = len(rec.steps) > 1  # liquid may have moved
            step("recover")
            rec.recovery = recover(bench, drain_lines=moved)
    rec.bench_seconds = bench.clock.now() - rec.bench_start
    rec.finished = _now()
    return rec


def recover(bench: Bench, drain_lines: bool = True) -> str:
    """After a failure: drain and clean the densimeter route, then make the bench safe.

    Steps: drain the cell and lines to waste and clean them with solvent and gas (best
    effort); stop every pump and read back that none moves and that no drive has a fault
    latched (a latched fault puts the bench out of service: an operator checks the line and
    calls :meth:`Bench.reset_faults`); park every valve that connects a
    stock reservoir or the solvent past its port, and check by read-back that no reservoir is
    joined to a waste (:mod:`asab.actions.safety`). Once liquid has moved the lines' state is
    unknown, so every pump is primed again and every mixing line counts as dry.

    Args:
        bench: the bench the job failed on.
        drain_lines: drain and clean (False when the job failed before any liquid moved).

    Returns:
        What was done. If any step failed the bench is marked out of service
        (``bench.out_of_service``, later jobs are refused) and that reason is returned.
    """
    problems: list[str] = []
    dens = bench.config.densimeter
    done = "nothing to drain"
    if dens is not None and drain_lines:
        instrument = bench.config.instrument(dens.instrument)
        try:
            drain(bench, instrument, bench.config.settings.waste_nodes[0], Ledger())
            clean(bench, instrument, Ledger())
            done = "cell and lines drained and cleaned"
        except Exception as exc:  # noqa: BLE001 - every failure is a reason to stop the bench
            problems.append(f"drain/clean: {exc}")
    if drain_lines:  # what the lines hold is unknown now: prime again, mixing lines are dry
        bench.primed.clear()
        bench.wet_lines.clear()
    return conclude_recovery(bench, done, problems)


def _run(bench: Bench, job: DensityJob, rec: JobRecord, step) -> None:
    cfg = bench.config
    dens = cfg.densimeter
    if bench.out_of_service:
        raise DeviceError("bench", "out of service", f"bench out of service: {bench.out_of_service}")
    if dens is None:
        raise AsabError("this bench has no densimeter configured")
    if job.temperature is not None and abs(job.temperature - dens.temperature) > 0.05:
        raise RequestError(f"temperature {job.temperature:.2f} K is not available: this bench "
                           f"measures at {dens.temperature:.2f} K (method {dens.method})")
    step("formulate")
    plan = plan_formulation(cfg, job.formulation, 1.0)
    rec.achieved, rec.distance, rec.flagged = by_name(plan.achieved, cfg), plan.distance, plan.flagged
    if not plan.deliverable:
        raise BelowResolutionError("the pumps cannot deliver this mix: " + "; ".join(plan.notes))
    flows = {plan.pumps[s]: f for s, f in plan.flows.items() if f > 0}
    stocks = {cfg.stock(s).pump: cfg.stock(s) for s, f in plan.flows.items() if f > 0}
    sources = {p: st.reservoir for p, st in stocks.items()}
    instrument = cfg.instrument(dens.instrument)
    check_stock(bench, plan.stock_volumes, first_portion_volume(bench, flows, instrument)
                + sample_volume(bench, instrument))
    sink = cfg.balance.vessel if cfg.balance else cfg.settings.waste_nodes[0]
    ledger = Ledger()
    rec.routes = ledger.routes  # filled as the job goes: kept on failure too
    try:
        _wet_work(bench, rec, flows, sources, instrument, sink, ledger, step)
    finally:
        pushed = sum(p.volume for p in rec.pushes[:2])
        rec.stock_volumes = {s: v * pushed for s, v in plan.stock_volumes.items() if v > 0}
        by_source = {st.reservoir: st.name for st in cfg.stocks}
        rec.stock_drawn = {by_source[n]: v for n, v in ledger.drawn.items() if n in by_source}
    _judge(bench, rec)


def _wet_work(bench: Bench, rec: JobRecord, flows, sources, instrument, sink: str,
              ledger: Ledger, step) -> None:
    """Prime → mix → deliver → measure → drain onto the balance → clean."""
    step("prime")
    prime(bench, sources, ledger)
    step("mix")
    rec.pushes.append(first_portion(bench, flows, sources, instrument, ledger))
    if bench.balance is not None:
        bench.balance.tare()
    step("deliver")
    rec.pushes.append(deliver(bench, flows, sources, instrument, sink, ledger))
    step("measure")
    rec.measurement = _measurement(measure(bench, rec.sample))
    step("drain")
    rec.pushes.append(drain(bench, instrument, sink, ledger))
    rec.weighing = _weigh(bench, sink, rec)
    step("clean")
    rec.pushes.extend(clean(bench, instrument, ledger))


def check_stock(bench: Bench, shares: dict[str, float], volume: float) -> None:
    """Refuse a job whose stocks would run dry.

    Args:
        shares: stock name → volume fraction of the mixture.
        volume: mL of mixture the job will make.

    Raises:
        InsufficientStockError: a reservoir holds less than the job would draw, counting the
            syringe's reserve and, for an unprimed pump, its priming volume
            (:func:`~asab.actions.sample.prime_volume`).
    """
    short = []
    for name, share in shares.items():
        stock = bench.config.stock(name)
        pump = bench.pumps[stock.pump]
        need = share * volume + reserve(bench, stock.pump) + 0.02 * pump.volume_max - pump.fill_level()
        if stock.pump not in bench.primed:
            need += prime_volume(bench, stock.pump, stock.reservoir)
        left = stock.volume - bench.drawn.get(stock.reservoir, 0.0)
        if need > left:
            short.append(f"{name}: needs up to {need:.2f} mL, {max(left, 0.0):.2f} mL left")
    if short:
        raise InsufficientStockError("not enough stock solution: " + "; ".join(short))


def _judge(bench: Bench, rec: JobRecord) -> None:
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
        _mass_off(bench, rec, w, balance, tol)
    m = rec.measurement
    if m is not None and m.density.n_valid == 0:
        conditions = sorted({r.density_condition for r in m.repetitions})
        raise DeviceError(bench.config.densimeter.name, "no valid value",
                          f"no valid density in {len(m.repetitions)} repetitions "
                          f"(conditions: {', '.join(conditions)})")
    if w is not None and w.relative_deviation is not None and abs(w.relative_deviation) > tol:
        raise DeviceError(balance, "weighing mismatch",
                          f"weighed {w.volume_weighed:.3f} mL passed the cell, expected "
                          f"{w.volume_expected:.3f} mL ({w.relative_deviation:+.1%}, "
                          f"tolerance ±{tol:.0%})")


def _mass_off(bench: Bench, rec: JobRecord, w: Weighing, balance: str, tol: float) -> None:
    """A weighed mass outside the tolerance: raise if short, log if above (see :func:`_judge`)."""
    by_pump = {st.pump: st.name for st in bench.config.stocks}
    pumps = ", ".join(f"{p} ({by_pump.get(p, '?')})" for p in sorted(rec.pushes[1].flows))
    text = (f"weighed {w.mass:.4f} g on {balance}, expected {w.mass_expected:.4f} g from the "
            f"plan ({w.mass_deviation:+.1%}, tolerance ±{tol:.0%}); pumps/stocks: {pumps}")
    if w.mass_deviation < 0:
        raise DeviceFault(balance, "mass short", f"{text}: a reservoir may be empty or a "
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


def _weigh(bench: Bench, vessel: str, rec: JobRecord) -> Weighing | None:
    """Read the balance under ``vessel`` (stable value, g) and compare it with the plan.

    Expected volume: the sample push plus the shared mixer line (mL). Expected mass: that
    volume × the planned mixture's density Σ(flow share × stock density), from the stock data
    (:func:`planned_density`), not from the densimeter — so a sample that is partly gas (an
    empty reservoir) is still caught. The pushed volumes are stock volumes, whose masses add
    exactly; only the shared line holds mixed liquid, for which ideal mixing is assumed. The
    excess volume of carbonate/LiPF6 mixtures is far below the 5 % default
    ``weighing_tolerance``, so ideal mixing is fine here.
    """
    if bench.balance is None or bench.config.balance is None:
        return None
    mass = bench.balance.read(stable=True).value
    expected = rec.pushes[1].volume + rec.pushes[0].shared_line
    rho = rec.measurement.density.mean if rec.measurement else None
    weighed = mass / rho if rho else None
    dev = (weighed - expected) / expected if weighed is not None else None
    rho_plan = planned_density(bench, rec.pushes[1].flows)
    mass_expected = expected * rho_plan if rho_plan else None
    mass_dev = (mass - mass_expected) / mass_expected if mass_expected else None
    return Weighing(vessel=vessel, mass=mass, volume_expected=expected, volume_weighed=weighed,
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
